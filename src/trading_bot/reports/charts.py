"""matplotlib figures as inline SVG strings: the equity and drawdown curves, PnL bars, and the
analyzer's heatmaps of the objective over stop-loss × risk:reward.

Why SVG from matplotlib: the page needs no script and no browser to be drawn (headless on a VPS, with
the Agg backend and no display); text stays text (svg.fonttype none: small, searchable, selectable);
nothing is fetched when the file is opened. Figures are built on `Figure` objects, never pyplot, so
no global figure state is kept between calls.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # before anything could pick a GUI backend: a VPS has no display

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

MAX_CURVE_POINTS = 2000  # an equity curve longer than this is thinned (keeping each bucket's low and high)


MAX_ANNOTATED_CELLS = 80  # per heatmap: above this the values are in the colours only (the text would not fit)


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)  # XML declaration and DOCTYPE (it names an external DTD)


_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)  # RDF naming matplotlib's web site


@contextmanager
def drawing(name: str) -> Iterator[None]:
    """The settings a figure is built and saved under (text objects read them when made)."""
    with matplotlib.rc_context({
        "svg.fonttype": "none",  # text as <text>, not glyph paths: a fraction of the size
        "svg.hashsalt": name,  # deterministic ids, distinct between the figures of one page
        "text.parse_math": False,  # a "$" in a symbol is text, not TeX
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],  # a short font list on every <text>
        "font.size": 8.0, "axes.titlesize": 9.0,
    }):
        yield


def to_svg(fig: Figure) -> str:
    """The figure as an <svg> element for inline use: no prolog, no metadata, no date."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return _METADATA.sub("", _PROLOG.sub("", buffer.getvalue()), count=1)


def thin(values: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of a curve to draw: all of them up to max_points, else the first, the last, and each
    bucket's lowest and highest point (a drawdown's bottom and a peak survive the thinning)."""
    n = values.shape[0]
    if n <= max_points:
        return np.arange(n)
    edges = np.linspace(0, n, max_points // 2 + 1).astype(np.int64)
    keep = [0, n - 1]
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            chunk = values[lo:hi]
            keep += [lo + int(np.argmin(chunk)), lo + int(np.argmax(chunk))]
    return np.unique(np.asarray(keep, dtype=np.int64))


def _dates(ms: np.ndarray) -> np.ndarray:
    return np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")


def _date_axis(ax: Axes) -> None:
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def equity_figure(times_ms: np.ndarray, equity: np.ndarray, drawdown: np.ndarray) -> str:
    """Equity (quote currency) above, drawdown from the running peak (%) below, on one time axis."""
    with drawing("equity"):
        keep = thin(equity)
        when = _dates(times_ms[keep])
        fig = Figure(figsize=(9.0, 4.2), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1.0))
        top.step(when, equity[keep], where="post", color="#1f5fa8", linewidth=1.2)
        top.axhline(float(equity[0]), color="#999", linewidth=0.7, linestyle="--")
        top.set_ylabel("equity")
        top.set_title("equity after each closed trade")
        top.grid(alpha=0.3)
        bottom.fill_between(when, -100.0 * drawdown[keep], 0.0, step="post", color="#b3261e", alpha=0.4, linewidth=0)
        bottom.set_ylabel("drawdown %")
        bottom.grid(alpha=0.3)
        _date_axis(bottom)
        return to_svg(fig)


def _colours(values: Sequence[float]) -> list[str]:
    return ["#0a7d32" if v >= 0 else "#b3261e" for v in values]


def bot_bars_figure(labels: Sequence[str], pnl: Sequence[float]) -> str:
    """Horizontal bars, one per bot (its name on the axis): the height grows with the number of bots."""
    with drawing("pnl-by-bot"):
        fig = Figure(figsize=(9.0, 0.8 + 0.22 * max(len(labels), 1)), layout="constrained")
        ax = fig.subplots()
        rows = np.arange(len(labels))
        ax.barh(rows, pnl, color=_colours(pnl))
        ax.set_yticks(rows, list(labels))
        ax.invert_yaxis()  # the first bot on top, as in the table
        ax.axvline(0.0, color="#444", linewidth=0.7)
        ax.set_xlabel("PnL")
        ax.grid(axis="x", alpha=0.3)
        return to_svg(fig)


def day_bars_figure(days_ms: Sequence[int], pnl: Sequence[float]) -> str:
    """One bar per UTC day that had a closed trade."""
    with drawing("pnl-by-day"):
        fig = Figure(figsize=(9.0, 2.8), layout="constrained")
        ax = fig.subplots()
        ax.bar(_dates(np.asarray(days_ms)), pnl, width=0.8, align="edge", color=_colours(pnl))
        ax.axhline(0.0, color="#444", linewidth=0.7)
        ax.set_ylabel("PnL")
        ax.grid(axis="y", alpha=0.3)
        _date_axis(ax)
        return to_svg(fig)


def cell_label(value: float) -> str:
    """A heatmap cell's text: three significant digits; empty for a cell that could not be chosen."""
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def heatmaps_figure(name: str, surface: np.ndarray, sl: Sequence[float], rr: Sequence[float],
                    thresholds: Sequence[float], objective: str, chosen: tuple[int, int, int] | None) -> str:
    """One small heatmap per threshold of surface[threshold, sl, rr], on one colour scale (the bot's
    finite values), grey where a cell made too few trades; the chosen cell outlined. Each cell's text
    carries the id `cell-T-I-J` and the outline `chosen-T-I-J`, so the figure can be read back."""
    with drawing(name):
        count = len(thresholds)
        columns = min(3, count)
        rows = math.ceil(count / columns)
        finite = surface[np.isfinite(surface)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if high <= low:
            low, high = low - 0.5, high + 0.5
        norm = Normalize(low, high)
        # ±inf (a profit factor with no losing trade) drawn at the scale's end; NaN left out (grey).
        shown = np.ma.masked_invalid(np.clip(surface, low, high))
        annotate = len(sl) * len(rr) <= MAX_ANNOTATED_CELLS
        fig = Figure(figsize=(3.0 * columns + 0.8, 2.5 * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
        mesh = None
        for t, ax in enumerate(axes):
            if t >= count:
                ax.set_visible(False)
                continue
            ax.set_facecolor("#dddddd")
            mesh = ax.pcolormesh(shown[t], cmap="viridis", norm=norm, edgecolors="white", linewidth=0.5)
            ax.set_xticks(np.arange(len(rr)) + 0.5, [f"{v:g}" for v in rr])
            ax.set_yticks(np.arange(len(sl)) + 0.5, [f"{100 * v:g}" for v in sl])
            ax.set_xlabel("risk:reward")
            ax.set_ylabel("stop-loss %")
            is_chosen = chosen is not None and chosen[0] == t
            ax.set_title(f"threshold {thresholds[t]:.4g}{'  (chosen)' if is_chosen else ''}",
                         fontweight="bold" if is_chosen else "normal")
            if annotate:
                for i in range(len(sl)):
                    for j in range(len(rr)):
                        label = cell_label(float(surface[t, i, j]))
                        if label:
                            bright = norm(float(shown[t, i, j])) > 0.6
                            text = ax.text(j + 0.5, i + 0.5, label, ha="center", va="center", fontsize=6.5,
                                           color="black" if bright else "white")
                            text.set_gid(f"cell-{t}-{i}-{j}")
            if is_chosen and chosen is not None:
                _, i, j = chosen
                outline = Rectangle((j, i), 1, 1, fill=False, edgecolor="#e4002b", linewidth=2.2)
                outline.set_gid(f"chosen-{t}-{i}-{j}")
                ax.add_patch(outline)
        if mesh is not None:
            fig.colorbar(mesh, ax=list(axes[:count]), label=f"{objective} (training)", shrink=0.9)
        return to_svg(fig)
