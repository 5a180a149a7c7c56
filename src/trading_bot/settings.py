"""Settings: one frozen dataclass built from the environment and an optional `.env` file.

The environment wins over `.env` (so systemd's EnvironmentFile and a shell export behave alike).
Every bad value raises SettingsError naming the setting; the CLI turns it into one line + exit 2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from trading_bot.domain.protections import ProtectionLimits
from trading_bot.domain.ranges import out_of_range
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.timeframes import TIMEFRAME_MS
from trading_bot.domain.trades import Costs
from trading_bot.domain.universe import UniverseRule, parse_universe

DEFAULT_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
DEFAULT_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Each mode has books and a journal of its own: a paper run must never load, rewrite or journal into
# the live account's. (Replay's folder is where it always was.)
STATE_DIRS = {"paper": "state/paper", "live": "state/live", "replay": "replay/state"}
LEGACY_STATE_DIR = "state"  # before the split: paper and live shared it (moved by persistence/state_migration.py)


Number = TypeVar("Number", int, float)


class SettingsError(ValueError):
    """A setting has a value we cannot run with. The message names the setting."""


class Secret(str):
    """A string that never shows itself in repr(), logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def __str__(self) -> str:  # f-strings and %s formatting go through __str__
        return "***" if self else ""

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Settings:
    dry_run: bool = True
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    # TRADING_SYMBOLS=top:N or all: the symbols are chosen at startup and refreshed (engine/universe.py);
    # `symbols` is then empty.
    universe: UniverseRule | None = None
    timeframes: tuple[str, ...] = DEFAULT_TIMEFRAMES
    heartbeat_seconds: float = 5.0
    exchange_id: str = "binanceusdm"
    exchange_url: str = ""
    api_key: Secret = field(default=Secret(""), repr=False)
    api_secret: Secret = field(default=Secret(""), repr=False)
    initial_balance: float = 10_000.0
    leverage: float = 5.0
    risk_per_trade: float = 0.01
    max_open_positions: int = 10
    fee_rate: float = 0.0004
    slippage: float = 0.0002
    data_dir: Path = Path("data")
    strategy_config: Path = Path("config/strategy_config.json")
    log_level: str = "INFO"
    log_file: Path | None = None
    history_candles: int = 1000
    synthetic_seed: int = 42
    fetch_concurrency: int = 8
    market_data: str = "auto"  # auto | exchange | synthetic (paper mode only)
    exchange_demo: bool = False  # ccxt enable_demo_trading: Binance's demo (paper money) endpoints
    live_confirmed: bool = False  # DRY_RUN=false also needs LIVE_TRADING_CONFIRMED=yes
    exchange_timeout_ms: int = 10_000
    exchange_recv_window_ms: int = 5_000
    adopt_unknown_positions: bool = True  # live: protect exchange positions the bot did not open
    clock_speed: float = 1.0  # >1: time-lapse (synthetic market or a local fake exchange only)
    clock_origin_ms: int | None = None  # the epoch ms at which the time-lapse clock equals the wall clock
    # Account-level protection (domain/protections.py); 0 switches each off.
    daily_loss_limit: float = 0.0
    max_drawdown: float = 0.0
    cooldown_stopouts: int = 0
    cooldown_candles: int = 0
    max_order_notional: float = 0.0
    funding: str = "auto"  # paper/replay/backtest: auto (cached history, else the default rate) | off
    # Candles from the exchange: pushed over websockets (REST fills gaps and takes over on failure) or polled.
    candle_feed: str = "websocket"  # websocket | rest
    exchange_ws_url: str = ""  # ccxt.pro's linear websocket base; "" = ccxt's, or EXCHANGE_URL's host + /ws
    candle_push_grace_ms: int = 2_000  # how long after a close a pushed candle is waited for before REST
    ws_ping_seconds: float = 10.0  # websocket ping interval; two unanswered = a dead connection
    # Live: the account over Binance's user data stream (fills booked as they happen); the REST
    # positions request is then a consistency check every user_stream_check_s (every heartbeat
    # while the stream is down, and always with the stream off).
    user_stream: bool = True
    user_stream_check_s: float = 60.0
    # Prometheus metrics (engine/metrics.py): 0 = off, and then prometheus_client is never imported.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"  # loopback by default: the figures include the account's balance
    # Notifications and chat commands (engine/notifications/): off while neither the bot token nor the
    # webhook is set, and then nothing of them is imported.
    telegram_bot_token: Secret = field(default=Secret(""), repr=False)
    telegram_chat_ids: tuple[int, ...] = ()  # the allow-listed chats: sent to, and the only ones obeyed
    telegram_allowed_users: tuple[int, ...] = ()  # when set, only these users' commands are obeyed; empty: a chat's every member
    telegram_api_url: str = "https://api.telegram.org"
    webhook_url: Secret = field(default=Secret(""), repr=False)  # Discord's and Slack's embed a token
    webhook_format: str = "json"  # json (Discord, Slack, ntfy's JSON publishing) | text (a plain body: ntfy topics)
    notify_daily_hour_utc: int | None = 0  # the daily summary at this UTC hour on the bot's clock; None: off

    @property
    def notifications_on(self) -> bool:
        return bool(self.telegram_bot_token or self.webhook_url)

    @property
    def costs(self) -> Costs:
        return Costs(self.fee_rate, self.slippage)

    @property
    def risk_limits(self) -> RiskLimits:
        return RiskLimits(self.risk_per_trade, self.leverage, self.max_open_positions, self.max_order_notional)

    @property
    def protections(self) -> ProtectionLimits:
        return ProtectionLimits(self.daily_loss_limit, self.max_drawdown, self.cooldown_stopouts, self.cooldown_candles)

    @property
    def candles_dir(self) -> Path:
        return self.data_dir / "candles"

    @property
    def synthetic_dir(self) -> Path:
        return self.data_dir / "synthetic"

    def mode(self, replay: bool = False) -> str:
        """paper, live or replay: which books a run (or `status`) works with."""
        return "replay" if replay else "paper" if self.dry_run else "live"

    def state_dir(self, replay: bool = False, *, mode: str | None = None) -> Path:
        return self.data_dir / STATE_DIRS[mode or self.mode(replay)]

    @property
    def legacy_state_dir(self) -> Path:
        return self.data_dir / LEGACY_STATE_DIR

    @property
    def bot_keys(self) -> list[tuple[str, str]]:
        """The bots of a symbol list (none for top:N / all: the daemon chooses those at startup)."""
        return [(s, tf) for s in self.symbols for tf in self.timeframes]

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# --- parsers: each takes the raw string and returns the value or raises ValueError(reason) ---


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _integer(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def _in_range(parse: Callable[[str], Number], low: float, high: float, *, low_open: bool = False) -> Callable[[str], Number]:
    def check(raw: str) -> Number:
        value = parse(raw)
        problem = out_of_range(value, low, high, low_open=low_open)
        if problem:
            raise ValueError(f"{problem}, got {raw.strip()}")
        return value

    return check


def parse_symbols(raw: str) -> tuple[str, ...]:
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if not symbols:
        raise ValueError("expected at least one symbol, e.g. BTC/USDT:USDT")
    for symbol in symbols:
        base, slash, quote = symbol.partition("/")
        if not slash or not base or not quote or any(c.isspace() for c in symbol):
            raise ValueError(f"{symbol!r} is not a ccxt symbol like BTC/USDT:USDT")
    return symbols


def parse_trading_symbols(raw: str) -> tuple[str, ...] | UniverseRule:
    """A comma list of symbols, or `top:N` / `all` (domain/universe.py)."""
    rule = parse_universe(raw)
    return rule if rule is not None else parse_symbols(raw)


def symbol_fields(value: tuple[str, ...] | UniverseRule) -> dict[str, Any]:
    """The Settings fields one TRADING_SYMBOLS value sets (a list clears a universe and vice versa)."""
    if isinstance(value, UniverseRule):
        return {"symbols": (), "universe": value}
    return {"symbols": value, "universe": None}


def parse_timeframes(raw: str) -> tuple[str, ...]:
    timeframes = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    if not timeframes:
        raise ValueError("expected at least one timeframe, e.g. 5m")
    for tf in timeframes:
        if tf not in TIMEFRAME_MS:
            raise ValueError(f"unknown timeframe {tf!r} (expected one of {', '.join(TIMEFRAME_MS)})")
    return timeframes


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("expected a path, got an empty value")
    return Path(raw.strip()).expanduser()


def _optional_path(raw: str) -> Path | None:
    return Path(raw.strip()).expanduser() if raw.strip() else None


def _exchange_id(raw: str) -> str:
    value = raw.strip().lower()
    if not value.replace("_", "").isalnum():
        raise ValueError(f"expected a ccxt exchange id such as binanceusdm, got {raw!r}")
    return value


MARKET_DATA_CHOICES = ("auto", "exchange", "synthetic")
FUNDING_CHOICES = ("auto", "off")
CANDLE_FEED_CHOICES = ("websocket", "rest")
WEBHOOK_FORMATS = ("json", "text")


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _optional_epoch_ms(raw: str) -> int | None:
    if not raw.strip():
        return None
    value = _integer(raw)
    if value < 0:
        raise ValueError(f"expected milliseconds since the epoch, got {raw!r}")
    return value


def _port_or_off(raw: str) -> int:
    """A TCP port, or 0 / empty for off."""
    if not raw.strip():
        return 0
    value = _integer(raw)
    if not 0 <= value <= 65_535:
        raise ValueError(f"expected a port 1–65535, or 0 / empty for off, got {raw.strip()}")
    return value


def _host(raw: str) -> str:
    """An IP address or a host name to bind to (no scheme, no port)."""
    value = raw.strip()
    if not value or not all(c.isalnum() or c in ".-:_" for c in value) or "://" in value:
        raise ValueError(f"expected an address to listen on such as 127.0.0.1, 0.0.0.0 or ::1, got {raw!r}")
    return value


def _telegram_token(raw: str) -> Secret:
    """A Bot API token as @BotFather gives it (digits, a colon, then letters, digits, - and _). The
    value is never repeated in the error: it is a secret, and a near miss is almost the real one."""
    value = raw.strip()
    if value:
        bot_id, colon, key = value.partition(":")
        if not (colon and bot_id.isdigit() and len(key) >= 20 and key.replace("-", "").replace("_", "").isalnum()):
            raise ValueError("expected a token like 123456789:AA… as @BotFather gives it (the value is not shown)")
    return Secret(value)


def _telegram_ids(raw: str, example: str) -> tuple[int, ...]:
    """Comma-separated Telegram ids, each once; empty: none."""
    ids = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            ids.append(int(part))
        except ValueError:
            raise ValueError(f"expected {example}, comma-separated, got {part!r}") from None
    return tuple(dict.fromkeys(ids))


def _chat_ids(raw: str) -> tuple[int, ...]:
    """A private chat's id is the user's; a group's is negative."""
    return _telegram_ids(raw, "chat ids such as 123456789 or -1001234567890")


def _user_ids(raw: str) -> tuple[int, ...]:
    ids = _telegram_ids(raw, "user ids such as 123456789")
    if any(i <= 0 for i in ids):
        raise ValueError("a user id is a positive number (a negative id is a group's: that goes in TELEGRAM_CHAT_ID)")
    return ids


def _http_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
        raise ValueError(f"expected an http:// or https:// URL, got {raw!r}")
    return value


def _secret_url(raw: str) -> Secret:
    """A URL that embeds a token (Discord's and Slack's webhooks): checked, never repeated."""
    value = raw.strip()
    if value and (not value.startswith(("http://", "https://")) or any(c.isspace() for c in value)):
        raise ValueError("expected an http:// or https:// URL (the value is not shown: it may hold a token)")
    return Secret(value)


def _hour_or_off(raw: str) -> int | None:
    value = raw.strip().lower()
    if value in ("", "off"):
        return None
    hour = _integer(value)
    if not 0 <= hour <= 23:
        raise ValueError(f"expected an hour 0–23, or off, got {raw.strip()}")
    return hour


def is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in ("localhost", "::1") or host.startswith("127.")


def check_consistency(settings: Settings) -> None:
    """Rules that involve more than one setting."""
    if settings.clock_speed != 1.0 and settings.market_data != "synthetic" and not is_loopback_url(settings.exchange_url):
        # A fast clock against a real exchange would ask for candles that do not exist yet and sign
        # requests with timestamps the exchange refuses.
        raise SettingsError("CLOCK_SPEED: a time-lapse clock needs MARKET_DATA=synthetic or an EXCHANGE_URL on this "
                            f"machine (127.0.0.1 or localhost), got {settings.exchange_url or 'the real exchange'}")
    if bool(settings.telegram_bot_token) != bool(settings.telegram_chat_ids):
        raise SettingsError("TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID: set both (the chats are the only ones sent to "
                            "and obeyed) or neither")
    if settings.telegram_allowed_users and not settings.telegram_bot_token:
        raise SettingsError("TELEGRAM_ALLOWED_USERS: the users who may command the bot over Telegram need "
                            "TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID too")
    if bool(settings.cooldown_stopouts) != bool(settings.cooldown_candles):
        raise SettingsError("COOLDOWN_STOPOUTS and COOLDOWN_CANDLES: set both (N stop-outs in a row → no signal for M "
                            f"candles) or neither, got {settings.cooldown_stopouts} and {settings.cooldown_candles}")


# env name -> (field name, parser)
FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "DRY_RUN": ("dry_run", _bool),
    "TRADING_SYMBOLS": ("symbols", parse_trading_symbols),  # may set `universe` instead (symbol_fields)
    "TRADING_TIMEFRAMES": ("timeframes", parse_timeframes),
    "HEARTBEAT_SECONDS": ("heartbeat_seconds", _in_range(_number, 0.0, 3600.0, low_open=True)),
    "EXCHANGE_ID": ("exchange_id", _exchange_id),
    "EXCHANGE_URL": ("exchange_url", str.strip),
    "API_KEY": ("api_key", lambda raw: Secret(raw.strip())),
    "API_SECRET": ("api_secret", lambda raw: Secret(raw.strip())),
    "INITIAL_BALANCE": ("initial_balance", _in_range(_number, 0.0, 1e12, low_open=True)),
    "LEVERAGE": ("leverage", _in_range(_number, 1.0, 125.0)),
    "RISK_PER_TRADE": ("risk_per_trade", _in_range(_number, 0.0, 1.0, low_open=True)),
    "MAX_OPEN_POSITIONS": ("max_open_positions", _in_range(_integer, 1, 10_000)),
    "FEE_RATE": ("fee_rate", _in_range(_number, 0.0, 0.05)),
    "SLIPPAGE": ("slippage", _in_range(_number, 0.0, 0.05)),
    "DATA_DIR": ("data_dir", _path),
    "STRATEGY_CONFIG": ("strategy_config", _path),
    "LOG_LEVEL": ("log_level", _log_level),
    "LOG_FILE": ("log_file", _optional_path),
    "HISTORY_CANDLES": ("history_candles", _in_range(_integer, 100, 100_000)),
    "SYNTHETIC_SEED": ("synthetic_seed", _integer),
    "FETCH_CONCURRENCY": ("fetch_concurrency", _in_range(_integer, 1, 64)),
    "MARKET_DATA": ("market_data", _one_of(MARKET_DATA_CHOICES)),
    "EXCHANGE_DEMO": ("exchange_demo", _bool),
    "LIVE_TRADING_CONFIRMED": ("live_confirmed", _bool),
    "EXCHANGE_TIMEOUT_MS": ("exchange_timeout_ms", _in_range(_integer, 500, 120_000)),
    "EXCHANGE_RECV_WINDOW_MS": ("exchange_recv_window_ms", _in_range(_integer, 500, 60_000)),
    "ADOPT_UNKNOWN_POSITIONS": ("adopt_unknown_positions", _bool),
    "CLOCK_SPEED": ("clock_speed", _in_range(_number, 0.0, 10_000.0, low_open=True)),
    "CLOCK_ORIGIN_MS": ("clock_origin_ms", _optional_epoch_ms),
    "DAILY_LOSS_LIMIT": ("daily_loss_limit", _in_range(_number, 0.0, 1.0)),
    "MAX_DRAWDOWN": ("max_drawdown", _in_range(_number, 0.0, 1.0)),
    "COOLDOWN_STOPOUTS": ("cooldown_stopouts", _in_range(_integer, 0, 1000)),
    "COOLDOWN_CANDLES": ("cooldown_candles", _in_range(_integer, 0, 100_000)),
    "MAX_ORDER_NOTIONAL": ("max_order_notional", _in_range(_number, 0.0, 1e12)),
    "FUNDING": ("funding", _one_of(FUNDING_CHOICES)),
    "CANDLE_FEED": ("candle_feed", _one_of(CANDLE_FEED_CHOICES)),
    "EXCHANGE_WS_URL": ("exchange_ws_url", str.strip),
    "CANDLE_PUSH_GRACE_MS": ("candle_push_grace_ms", _in_range(_integer, 0, 60_000)),
    "WS_PING_SECONDS": ("ws_ping_seconds", _in_range(_number, 0.05, 600.0)),
    "USER_STREAM": ("user_stream", _bool),
    "USER_STREAM_CHECK_S": ("user_stream_check_s", _in_range(_number, 1.0, 3600.0)),
    "METRICS_PORT": ("metrics_port", _port_or_off),
    "METRICS_HOST": ("metrics_host", _host),
    "TELEGRAM_BOT_TOKEN": ("telegram_bot_token", _telegram_token),
    "TELEGRAM_CHAT_ID": ("telegram_chat_ids", _chat_ids),
    "TELEGRAM_ALLOWED_USERS": ("telegram_allowed_users", _user_ids),
    "TELEGRAM_API_URL": ("telegram_api_url", _http_url),
    "WEBHOOK_URL": ("webhook_url", _secret_url),
    "WEBHOOK_FORMAT": ("webhook_format", _one_of(WEBHOOK_FORMATS)),
    "NOTIFY_DAILY_HOUR_UTC": ("notify_daily_hour_utc", _hour_or_off),
}


def settings_from_mapping(values: Mapping[str, str]) -> Settings:
    """Build Settings from already-merged key/value strings (unknown keys are ignored here)."""
    kwargs: dict[str, Any] = {}  # each value is what its field's parser returns
    for env_name, (field_name, parse) in FIELDS.items():
        raw = values.get(env_name)
        if raw is None:
            continue
        try:
            kwargs[field_name] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{env_name}: {exc}") from None
    if "symbols" in kwargs:
        kwargs.update(symbol_fields(kwargs["symbols"]))
    settings = Settings(**kwargs)
    check_consistency(settings)
    return settings


def unknown_env_file_keys(file_values: Mapping[str, str | None]) -> list[str]:
    return sorted(key for key in file_values if key not in FIELDS)


def env_file_warnings(env_file: Path) -> list[str]:
    """What a user should hear about their `.env`: unknown keys (a typo silently does nothing
    otherwise) and a file other users can read (it may hold the API secret)."""
    from dotenv import dotenv_values

    if not env_file.is_file():
        return []
    warnings = []
    try:
        unknown = unknown_env_file_keys(dotenv_values(env_file))
    except (OSError, UnicodeDecodeError):
        return []
    if unknown:
        warnings.append(f"{env_file}: unknown setting(s) ignored: {', '.join(unknown)}")
    if env_file.stat().st_mode & 0o044:
        warnings.append(f"{env_file} is readable by other users; it may hold your API secret: chmod 600 {env_file}")
    return warnings


def load_settings(env_file: Path | None = Path(".env"), environ: Mapping[str, str] | None = None) -> Settings:
    """Merge `.env` (if present) under the process environment and validate."""
    from dotenv import dotenv_values  # imported here: settings must not read files at import time

    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        try:
            file_values = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{env_file}: cannot read: {exc}") from None
        merged.update({k: v for k, v in file_values.items() if v is not None})
    source = os.environ if environ is None else environ
    merged.update({k: v for k, v in source.items() if k in FIELDS})
    return settings_from_mapping(merged)
