"""A writer that dies between writing its temp file and renaming it over the real one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DIES_BETWEEN_WRITE_AND_RENAME = """
import os, sys
from pathlib import Path
from trading_bot.persistence import atomic_files
path = Path(sys.argv[1])
atomic_files.os.replace = lambda *a: os._exit(9)  # killed after its temp file is written, before the rename
atomic_files.atomic_write_bytes(path, b"new")
"""


def dead_writers_temp(path: Path) -> Path:
    """The temp file a writer leaves when it dies between its write and its rename: a real process."""
    subprocess.run([sys.executable, "-c", DIES_BETWEEN_WRITE_AND_RENAME, str(path)], timeout=60)
    [temp] = path.parent.glob(f".{path.name}.*.tmp")
    return temp
