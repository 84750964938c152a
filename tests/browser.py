"""Headless Chromium (Debian's package) for the report tests: a screenshot of a local page, networking off."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="Debian's chromium is not installed (.ci/run installs it)")


def screenshot(page: Path, shot: Path, profile: Path, size: str = "1200,4000"):
    """The page rendered to `shot` (PNG); returns its pixels (h, w, 3) in [0, 1]."""
    import matplotlib.image as mpimg

    proc = subprocess.run(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size={size}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    return mpimg.imread(shot)[..., :3]
