"""The one-time move of the state from before paper, live and replay had folders of their own.

Until then paper and live shared `data/state/`, so a paper run loaded (and rewrote) the live books.
The legacy positions.json, trades.jsonl and status.json move into the folder of the mode that
positions.json names. Each file moves by hard link then unlink: a link never replaces an existing
file, and a move cut short leaves both names on one file, which the next run recognises and
finishes. positions.json moves last, so as long as any file is left behind it is there to say whose
they are.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from trading_bot.persistence.atomic_files import fsync_dir
from trading_bot.persistence.state_store import POSITIONS_FILE, STATUS_FILE, TRADES_FILE, StateError, decode_state

log = logging.getLogger(__name__)

MOVE_ORDER = (TRADES_FILE, STATUS_FILE, POSITIONS_FILE)  # positions.json last: it names the mode


def migrate_legacy_state(legacy: Path, folders: Mapping[str, Path]) -> Path | None:
    """Move the legacy state files into `folders[mode]`. Returns that folder, or None when there was
    nothing to move. Raises StateError when the files cannot be placed without guessing or
    overwriting (the daemon then refuses to start, and the files stay where they are)."""
    positions = legacy / POSITIONS_FILE
    where = " or ".join(str(folders[m]) for m in ("paper", "live"))
    try:
        data = positions.read_bytes()
    except FileNotFoundError:
        orphans = [name for name in (TRADES_FILE, STATUS_FILE) if (legacy / name).exists()]
        if orphans:
            raise StateError(f"{legacy}: {', '.join(orphans)} without a positions.json to say whose they are "
                             f"(paper or live): move them into {where}") from None
        return None
    except OSError as exc:
        raise StateError(f"{positions}: cannot read ({exc.strerror or exc})") from None
    try:
        mode = decode_state(data, str(positions)).mode
    except StateError as exc:
        raise StateError(f"{exc}; cannot tell whose books these are: move it into {where}") from None
    if mode not in folders:
        raise StateError(f"{positions}: unknown mode {mode!r}")
    target = folders[mode]
    target.mkdir(parents=True, exist_ok=True)
    for name in MOVE_ORDER:
        _move(legacy / name, target / name)
    log.info("moved the %s state from %s into %s (a one-time move: paper, live and replay now keep "
                "separate books)", mode, legacy, target)
    return target


def _move(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except FileNotFoundError:
        return  # moved by an earlier run (or never there)
    except FileExistsError:
        if not os.path.samefile(source, destination):
            raise StateError(f"{source} and {destination} both exist: keep one (move the other away) "
                             "and start again") from None
    except OSError as exc:  # a file system without hard links: rename, after checking by hand
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        if destination.exists():
            raise StateError(f"{source} and {destination} both exist: keep one (move the other away) "
                             "and start again") from None
        os.rename(source, destination)
        fsync_dir(destination.parent)
        fsync_dir(source.parent)
        return
    fsync_dir(destination.parent)  # the new name is on the disk before the old one goes
    source.unlink(missing_ok=True)
    fsync_dir(source.parent)
