"""The analyzer's choice checked on the whole account: the portfolio backtest (portfolio.py) over the
test period, once with the chosen parameters and once with the current ones.

The grid search scores each bot alone; the daemon runs every bot on one wallet under
MAX_OPEN_POSITIONS, so a signal can find every slot taken and sizes follow the shared balance. The
check uses what the grid search used: the very candles and scores its worker computed, the same
split (each series trades only its own last test segment, `analyzer.TestSegment`; the earlier
candles only warmed its indicators), the same costs, limits and initial balance (AnalysisOptions,
built from the settings). Pure: no files, no printing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from trading_bot.backtest.analyzer import AnalysisOptions, SeriesJob, SeriesResult, TestSegment, objective_value
from trading_bot.backtest.metrics import Metrics
from trading_bot.backtest.portfolio import PortfolioSeries, backtest_portfolio, portfolio_metrics
from trading_bot.domain.funding_settlement import FundingSettlement
from trading_bot.domain.params import StrategyConfig, StrategyParams
from trading_bot.domain.protections import ProtectionLimits
from trading_bot.domain.sizing import RiskLimits
from trading_bot.domain.trades import Costs
from trading_bot.domain.wallet import bot_id

SKIPPED_SHARE_WARNING = 1 / 3  # the cap turned away more than this share of the signals
RETURN_SHARE_WARNING = 0.5  # together the bots made less than this share of what they make alone


@dataclass(frozen=True)
class CheckedBot:
    """One series' test period as the grid search saw it, with the parameters to trade it with."""

    symbol: str
    timeframe: str
    segment: TestSegment  # the test candles and their scores (from the grid search's worker)
    current: StrategyParams  # the config's parameters before this analysis
    chosen: StrategyParams | None  # the analyzer's choice; None: the bot keeps its current parameters
    standalone: Metrics | None  # the choice's test metrics, the bot trading alone (the grid search's)

    @property
    def key(self) -> str:
        return bot_id(self.symbol, self.timeframe)


def checked_bots(jobs: Sequence[SeriesJob], results: Sequence[SeriesResult],
                 config: StrategyConfig) -> tuple[list[CheckedBot], list[str]]:
    """The bots in the jobs' order (the settings': the daemon's order within an instant), and the
    series left out, with why (no history to trade)."""
    by_key = {(r.symbol, r.timeframe): r for r in results}
    bots: list[CheckedBot] = []
    left_out: list[str] = []
    for job in jobs:
        r = by_key.get((job.symbol, job.timeframe))
        if r is None or r.test_segment is None:
            left_out.append(f"{job.symbol} {job.timeframe}: {r.error if r is not None and r.error else 'no history'}")
            continue
        current = config.params_for(job.symbol, job.timeframe)
        # The analyzer changes these three only (updated_document keeps the weights, so the scores hold).
        chosen = None if r.chosen is None else replace(
            current, threshold=r.chosen["threshold"], sl_pct=r.chosen["sl_pct"], rr_ratio=r.chosen["rr_ratio"])
        standalone = Metrics.from_json(r.test) if r.test is not None else None
        bots.append(CheckedBot(job.symbol, job.timeframe, r.test_segment, current, chosen, standalone))
    return bots, left_out


@dataclass(frozen=True)
class PortfolioRun:
    """One portfolio backtest over the test period."""

    per_bot: dict[str, Metrics]  # each bot's own trades inside the portfolio, from the initial balance
    portfolio: Metrics  # the shared wallet's equity curve
    skipped_entries: int  # signals refused at MAX_OPEN_POSITIONS (a refused signal repeated next candle counts again)
    open_positions: int  # still open at the end

    @property
    def signals(self) -> int:
        """Signals the cap was asked about: those taken (closed or still open) and those skipped."""
        return self.portfolio.trades + self.open_positions + self.skipped_entries

    def as_json(self) -> dict[str, Any]:
        return {"portfolio": self.portfolio.as_json(), "skipped_entries": self.skipped_entries,
                "signals": self.signals, "open_positions": self.open_positions}


@dataclass(frozen=True)
class PortfolioCheck:
    bots: tuple[CheckedBot, ...]
    left_out: tuple[str, ...]
    objective: str
    max_open_positions: int
    start_ms: int  # the earliest test start
    end_ms: int  # the close of the last candle
    chosen: PortfolioRun  # every bot with its chosen parameters (or its current ones, without a choice)
    current: PortfolioRun  # every bot with the config's parameters as they were

    def better(self) -> str:
        """Which parameters do better for the whole account by the analyzer's objective: "chosen",
        "current" or "equal"."""
        new, old = (objective_value(run.portfolio, self.objective) for run in (self.chosen, self.current))
        return "chosen" if new > old else "current" if old > new else "equal"

    def warning(self) -> str | None:
        """One line when the portfolio falls well short of what the standalone test figures suggest."""
        run = self.chosen
        reasons = []
        if run.signals and run.skipped_entries > SKIPPED_SHARE_WARNING * run.signals:
            reasons.append(f"MAX_OPEN_POSITIONS={self.max_open_positions} skipped {run.skipped_entries} of "
                           f"{run.signals} signals: the account takes far fewer trades than the per-bot test "
                           "figures assume")
        analyzed = [b for b in self.bots if b.standalone is not None]
        alone = sum(b.standalone.total_return for b in analyzed if b.standalone is not None)
        together = sum(run.per_bot[b.key].total_return for b in analyzed)
        if alone > 0 and together < RETURN_SHARE_WARNING * alone:
            reasons.append(f"together the analyzed bots made {100 * together:+.2f}% where their standalone test "
                           f"returns add up to {100 * alone:+.2f}%: the per-bot figures overstate the account")
        return "; ".join(reasons) or None

    def as_json(self) -> dict[str, Any]:
        bots = {b.key: {"symbol": b.symbol, "timeframe": b.timeframe, "params": "chosen" if b.chosen else "current",
                        "test_from_ts": b.segment.from_ts, "test_candles": int(b.segment.candles.shape[0]),
                        "standalone": b.standalone.as_json() if b.standalone is not None else None,
                        "in_portfolio": self.chosen.per_bot[b.key].as_json(),
                        "in_portfolio_current": self.current.per_bot[b.key].as_json()}
                for b in self.bots}
        return {"from_ms": self.start_ms, "to_ms": self.end_ms, "max_open_positions": self.max_open_positions,
                "objective": self.objective, "bots": bots, "chosen": self.chosen.as_json(),
                "current": self.current.as_json(), "better": self.better(), "warning": self.warning(),
                "left_out": list(self.left_out)}


def check_portfolio(bots: Sequence[CheckedBot], options: AnalysisOptions, left_out: Sequence[str] = (),
                    protections: ProtectionLimits | None = None,
                    funding: FundingSettlement | None = None) -> PortfolioCheck:
    """Both portfolio backtests over the test period (at least one bot), under the account rules and
    with funding as the daemon would book them."""
    if not bots:
        raise ValueError("the portfolio check needs at least one bot")
    costs = Costs(options.fee_rate, options.slippage)
    limits = RiskLimits(options.risk_per_trade, options.leverage, options.max_open_positions,
                        options.max_order_notional)
    # Each series is handed only its test candles, so it trades from its own split; the wallet's
    # period starts at the earliest of them.
    start_ms = min(b.segment.from_ts for b in bots)

    def run(params_of: Callable[[CheckedBot], StrategyParams]) -> tuple[PortfolioRun, int]:
        series = [PortfolioSeries(b.symbol, b.timeframe, b.segment.candles, params_of(b), b.segment.scores) for b in bots]
        result = backtest_portfolio(series, costs, limits, options.initial_balance, start_ms, protections, funding)
        report = portfolio_metrics(result)
        return PortfolioRun(report.per_bot, report.portfolio, report.skipped_entries, result.open_positions), result.end_ms

    chosen, end_ms = run(lambda b: b.chosen or b.current)
    current, _ = run(lambda b: b.current)  # the same candles: the same end
    return PortfolioCheck(tuple(bots), tuple(left_out), options.objective, options.max_open_positions, start_ms,
                          end_ms, chosen, current)
