"""Finding Chromium for the browser tests (Debian package `chromium`, which .ci/run installs)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def chromium() -> str | None:
    """$BUSDX_CHROMIUM, /usr/bin/chromium or chromium on the PATH; None when absent."""
    for c in (os.environ.get("BUSDX_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None
