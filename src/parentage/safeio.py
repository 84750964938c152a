"""Reading untrusted side files: only regular files, never more than a cap, JSON of bounded depth.

Everything a checkpoint ships beside its weights (config.json, shard indexes, tokenizer files, model cards,
merge configs, code) may have been made to break the reader: a FIFO that blocks `open`, `/dev/zero` behind a
symlink, a 4 GB README, JSON nested thousands deep or holding a 5,000-digit integer. Each reader goes through
here, so each of those gets one clear line naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .constants import JSON_MAX_BYTES, JSON_MAX_DEPTH, MAX_JSON_VALUES
from .errors import FormatError, LimitError


def regular_file(path: str | os.PathLike) -> os.stat_result:
    """stat of `path` (symlinks followed) if it is a regular file; FormatError otherwise. Checked before any
    `open`, because opening a FIFO blocks until someone writes to it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except OSError as e:
        raise FormatError(path, f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise FormatError(path, f"is {kind}, not a regular file")
    return st


def read_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The whole file, refused when it holds more than `limit` bytes."""
    size = regular_file(path).st_size
    if size > limit:
        raise FormatError(path, f"{size:,} bytes is too large for a {what} (the cap is {limit:,})")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since the stat
        raise FormatError(path, f"more than {limit:,} bytes is too large for a {what}")
    return data


def read_prefix(path: str | os.PathLike, limit: int) -> bytes:
    """At most the first `limit` bytes of a regular file (model cards and merge configs: only the top matters)."""
    regular_file(path)
    with open(path, "rb") as f:
        return f.read(limit)


def json_depth_ok(value, max_depth: int = JSON_MAX_DEPTH) -> bool:
    """True when no container nests deeper than max_depth (iterative: a deep value must not recurse here)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            if d > max_depth:
                return False
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            if d > max_depth:
                return False
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return True


def parse_json(where: str | os.PathLike, data: bytes | str, what: str = "the file", object_pairs_hook=None,
               max_depth: int | None = JSON_MAX_DEPTH):
    """JSON text -> value, or one FormatError naming `where`: bad UTF-8, bad syntax, nesting beyond what Python's
    parser survives, integers beyond Python's digit limit, and (with `max_depth`) nesting beyond max_depth.

    The depth walk costs about as much as the parse, so callers that validate every value they use and print
    none of the rest (safetensors headers, shard indexes, tokenizer files) pass max_depth=None; configs, whose
    values are shown in reports and would make the report writers recurse, keep it."""
    # Parsed values cost ~30-100 bytes each in Python: bound their number before parsing (counting separators
    # is a fast scan) so 64 MB of "1.5," cannot become gigabytes of objects.
    separators = data.count(b",") + data.count(b":") if isinstance(data, bytes) else data.count(",") + data.count(":")
    if separators > MAX_JSON_VALUES:
        raise LimitError(where, f"{what} holds more than {MAX_JSON_VALUES:,} JSON values; no real one does")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise FormatError(where, f"{what} nests deeper than Python's JSON parser can follow") from None
    except UnicodeDecodeError as e:
        raise FormatError(where, f"{what} is not UTF-8 ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # JSONDecodeError, the integer digit limit, duplicate keys from the hook
        raise FormatError(where, f"{what} is not valid JSON ({str(e)[:160]})") from None
    if max_depth is not None and not json_depth_ok(value, max_depth):
        raise FormatError(where, f"{what} nests deeper than {max_depth} levels")
    return value


def read_json(path: str | os.PathLike, max_depth: int | None = JSON_MAX_DEPTH) -> object:
    """A JSON side file (config.json, an index, a tokenizer), bounded in size and depth."""
    return parse_json(path, read_bounded(path, JSON_MAX_BYTES, "JSON side file"), max_depth=max_depth)


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink resolved, lies inside `root` (also resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
        return True
    except ValueError:
        return False
