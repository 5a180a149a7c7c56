"""An order we mean to send, recorded (and saved) before it is sent, so that a crash or a lost answer
is resolved by looking its client order id up, never by sending blindly again.

On disk (positions.json, "intents": {client_id: {...}}) the keys are those the bot has always
written: kind, symbol, timeframe, created_ms, and for entries side, qty and signal_ts. Older files
lack price (and protective intents side and qty); they read as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

IntentKind = Literal["entry", "stop", "target", "close"]


KINDS: tuple[IntentKind, ...] = ("entry", "stop", "target", "close")


@dataclass(frozen=True)
class OrderIntent:
    client_id: str
    kind: IntentKind
    symbol: str
    timeframe: str
    side: int | None  # the order's side (LONG buys, SHORT sells); an entry's is its position's
    amount: float | None
    price: float | None  # the trigger price of a stop or target; None for market orders
    created_ms: int
    signal_ts: int | None = None  # entries: open time of the signal candle

    @property
    def protective(self) -> bool:
        """A stop or target: a trigger (algo) order, looked up as one."""
        return self.kind in ("stop", "target")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "symbol": self.symbol, "timeframe": self.timeframe, "side": self.side,
                "qty": self.amount, "price": self.price, "signal_ts": self.signal_ts, "created_ms": self.created_ms}

    @classmethod
    def from_json(cls, client_id: str, raw: dict[str, Any]) -> OrderIntent:
        kind = raw["kind"]
        if kind not in KINDS:
            raise ValueError(f"intent {client_id}: unknown kind {kind!r}")
        side, amount, price, signal_ts = (raw.get(k) for k in ("side", "qty", "price", "signal_ts"))
        return cls(client_id=client_id, kind=cast(IntentKind, kind), symbol=str(raw.get("symbol") or ""),
                   timeframe=str(raw.get("timeframe") or ""), side=None if side is None else int(side),
                   amount=None if amount is None else float(amount), price=None if price is None else float(price),
                   created_ms=int(raw.get("created_ms") or 0), signal_ts=None if signal_ts is None else int(signal_ts))
