"""`trading-bot status`: what the state files say, readable by a person or (--json) a script.
Imports nothing heavy, so it answers in a blink even while the daemon runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from trading_bot.domain.formatting import format_ms, format_price
from trading_bot.domain.protections import DAY_MS
from trading_bot.domain.wallet import SavedState
from trading_bot.persistence.state_store import POSITIONS_FILE, StateStore, read_status

SIDES = {1: "long", -1: "short"}


def _age(ms: int | None) -> str:
    if not ms:
        return "never"
    seconds = max(0.0, time.time() - ms / 1000)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect_status(state_dir: Path, mode: str, legacy_dir: Path | None = None) -> dict[str, Any]:
    """Merge positions.json (authoritative positions) with status.json (last heartbeat figures) of
    one mode's folder (never takes the daemon's lock: it only reads)."""
    store = StateStore(state_dir)
    saved = store.load()
    heartbeat = read_status(store.status_path) or {}
    result: dict[str, Any] = {"mode": mode, "state_dir": str(state_dir), "running": _pid_alive(heartbeat.get("pid"))}
    if saved is None and not heartbeat:
        result["empty"] = True
        if legacy_dir is not None and (legacy_dir / POSITIONS_FILE).exists():
            result["legacy_state"] = str(legacy_dir)  # not moved yet: the next `run` moves it
        return result
    marks = {(p["symbol"], p["timeframe"]): p.get("mark") for p in heartbeat.get("positions", [])}
    positions = []
    if saved is not None:
        for book in saved.books.values():
            if book.position is None:
                continue
            p = book.position
            mark = marks.get((p.symbol, p.timeframe)) or p.entry_price
            positions.append({**p.to_json(), "mark": mark, "unrealised_pnl": p.unrealised(mark)})
        wallet = saved.wallet
        result.update(balance=wallet.balance, initial_balance=wallet.initial_balance,
                      realised_pnl=wallet.realised_pnl, fees_paid=wallet.fees_paid, funding=wallet.funding,
                      trades=wallet.trades,
                      wins=wallet.wins)
    upnl = sum(p["unrealised_pnl"] for p in positions)
    result["positions"] = positions
    result["paused"] = saved.paused if saved is not None else bool(heartbeat.get("paused"))
    result["trading_state"] = _trading_state(saved, heartbeat, result["running"])
    result["unrealised_pnl"] = upnl
    result["equity"] = result.get("balance", 0.0) + upnl
    result["last_heartbeat"] = {k: heartbeat.get(k) for k in (
        "heartbeat", "time_ms", "cycle_ms", "compute_ms", "bots", "new_candles", "pending_entries",
        "data_source", "candle_feed", "cache", "config", "ready_ms", "started_ms", "pid", "entry_latency", "halted",
        "universe", "user_stream")}
    return result


def _trading_state(saved: SavedState | None, heartbeat: dict[str, Any], running: bool) -> dict[str, str]:
    """A running daemon's own word (status.json); else what the saved books say the next start will be."""
    reported = heartbeat.get("trading_state")
    if running and isinstance(reported, dict) and isinstance(reported.get("state"), str):
        return {"state": reported["state"], "reason": str(reported.get("reason") or "")}
    if saved is None:
        return {"state": "active", "reason": ""}
    halts = ["paused by the operator"] if saved.paused else []
    if saved.guard.drawdown_halt:
        halts.append(saved.guard.drawdown_halt)
    if halts:
        return {"state": "halted", "reason": "; ".join(halts)}
    if saved.guard.daily_limit_day is not None and saved.guard.daily_limit_day == int(time.time() * 1000) // DAY_MS:
        return {"state": "reducing", "reason": "daily loss limit reached today; entries resume at 00:00 UTC"}
    return {"state": "active", "reason": ""}


def render_status(status: dict[str, Any]) -> str:
    if status.get("empty"):
        line = f"mode {status['mode']}: no state yet in {status['state_dir']} (the bot has not run here)"
        if status.get("legacy_state"):
            line += (f"\nstate from before paper and live had folders of their own is in {status['legacy_state']}: "
                     "the next `trading-bot run` moves it into the folder of its mode")
        return line
    hb = status["last_heartbeat"]
    source = hb.get("data_source") or "?"
    funding = status.get("funding", 0.0)
    lines = [
        f"trading-bot {'running' if status['running'] else 'not running'} · mode {status['mode']} · "
        f"data {source}{' (SYNTHETIC market, not real prices)' if source == 'synthetic' else ''}"
        f"{' · candles ' + hb['candle_feed'] if status['running'] and hb.get('candle_feed') not in (None, 'polled') else ''}",
        f"equity {status['equity']:.2f} USDT · balance {status.get('balance', 0):.2f} · "
        f"realised {status.get('realised_pnl', 0):+.2f} = trading {status.get('realised_pnl', 0) - funding:+.2f} "
        f"(fees {status.get('fees_paid', 0):.2f} paid) + funding {funding:+.2f} · "
        f"unrealised {status['unrealised_pnl']:+.2f}",
        f"trades {status.get('trades', 0)} (won {status.get('wins', 0)}) · open positions {len(status['positions'])}",
    ]
    state = status.get("trading_state") or {}
    if state.get("state") == "halted":
        lines.append(f"trading HALTED: {state.get('reason')}: no new entries until `trading-bot resume` "
                     "(open positions keep their stops and targets)")
    elif state.get("state") == "reducing":
        lines.append(f"trading REDUCING: {state.get('reason')}: no new entries for now "
                     "(open positions keep their stops and targets)")
    if hb.get("heartbeat") is not None:
        cache = hb.get("cache") or {}
        lines.append(
            f"last heartbeat #{hb['heartbeat']} {_age(hb.get('time_ms'))}: cycle {hb.get('cycle_ms', 0):.1f} ms "
            f"(compute {hb.get('compute_ms', 0):.1f} ms), {hb.get('bots')} bots, "
            f"cache hit {100 * cache.get('hit_rate', 0):.1f}% (data {100 * cache.get('data_hit_rate', 0):.1f}%; "
            f"features computed {cache.get('feature_misses', 0)}×, reused {cache.get('feature_hits', 0)}×)"
        )
        latency = hb.get("entry_latency") or {}
        if latency.get("orders"):
            lines.append(f"entry latency over {latency['orders']} order(s): p50 {latency['p50_ms']:.0f} ms, "
                         f"p99 {latency['p99_ms']:.0f} ms (signal candle close → order acknowledged)")
        if hb.get("user_stream"):  # live only
            lines.append(f"user data stream {hb['user_stream']}"
                         f"{'' if hb['user_stream'] == 'connected' else ' (positions checked over REST every heartbeat)'}")
        universe = hb.get("universe")
        if universe:  # TRADING_SYMBOLS=top:N or all
            chosen = universe.get("chosen") or []
            line = (f"symbols {universe.get('rule')} from the {universe.get('source')}: {len(chosen)} chosen "
                    f"({', '.join(chosen[:5])}{', …' if len(chosen) > 5 else ''})")
            if universe.get("kept"):
                line += f", kept until flat: {', '.join(universe['kept'])}"
            if universe.get("warming"):
                line += f", {universe['warming']} bot(s) still loading history"
            lines.append(f"{line} · next refresh {format_ms(universe.get('next_refresh_ms') or 0)} UTC")
        config = hb.get("config") or {}
        line = f"strategy config: {config.get('source')} · reloads {config.get('reloads', 0)}"
        if config.get("last_error"):
            line += f" · last rejected: {config['last_error']}"
        lines.append(line)
    for p in status["positions"]:
        lines.append(
            f"  {p['symbol']:<15} {p['timeframe']:>4} {SIDES.get(p['side'], '?'):<5} qty {p['qty']:.6g} "
            f"entry {format_price(p['entry_price'])} stop {format_price(p['stop'])} target {format_price(p['target'])} "
            f"mark {format_price(p['mark'])} upnl {p['unrealised_pnl']:+.2f}"
        )
    return "\n".join(lines)


def status_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, sort_keys=True)

