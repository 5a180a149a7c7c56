"""The strategy config on disk (config/strategy_config.json): load and validate for the running bots,
atomic rewrite (the analyzer), and the file stamp the hot reload watches. A missing file means the
embedded defaults; a broken one raises StrategyConfigError naming the file (the daemon then keeps
its previous config). The format itself and its validation are pure and live in domain/params.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trading_bot.domain.params import StrategyConfig, StrategyConfigError, default_config, parse_config_bytes
from trading_bot.persistence.atomic_files import atomic_write_bytes


def load_config(path: Path, bot_keys: Iterable[tuple[str, str]] = ()) -> StrategyConfig:
    """Load and validate for the given bots. A missing file gives the embedded defaults."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        config = default_config()
        config.validate_for(bot_keys)
        return config
    except IsADirectoryError:
        raise StrategyConfigError(f"{path}: is a directory, expected a JSON file") from None
    except OSError as exc:
        raise StrategyConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    config = parse_config_bytes(data, str(path))
    try:
        config.validate_for(bot_keys)
    except StrategyConfigError as exc:
        raise StrategyConfigError(f"{path}: {exc}") from None
    return config


def write_config(path: Path, document: Mapping[str, Any]) -> None:
    """Atomically replace the config file (used by the analyzer and tests)."""
    data = json.dumps(document, indent=2, sort_keys=False, allow_nan=False).encode() + b"\n"
    atomic_write_bytes(path, data)


def config_stamp(path: Path) -> tuple[int, int, int] | None:
    """What identifies a version of the file on disk: (mtime_ns, size, inode); None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
