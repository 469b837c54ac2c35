"""Where jdps keeps the data it installs: `$JDPS_DATA_DIR`, else `~/.cache/jdps`."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The jdps data folder (read at each call, so the variable can be changed at run time)."""
    root = os.environ.get("JDPS_DATA_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "jdps"
