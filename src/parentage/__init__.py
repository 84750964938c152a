"""parentage: test whether one language-model checkpoint was derived from another, from the weights."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("parentage")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

from .checkpoint import Checkpoint  # noqa: E402
from .errors import ParentageError  # noqa: E402

__all__ = ["Checkpoint", "ParentageError", "__version__"]
