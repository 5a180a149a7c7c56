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


# What drawing() makes every <text> say; the page's CSS (reports/html.py) says it once instead.
_FONT_STYLE = "font-family: 'DejaVu Sans', sans-serif; "


_BETWEEN_TAGS = re.compile(r">\s+<")  # matplotlib's indentation: a tenth of the file


_NO_ROTATION = re.compile(r' transform="rotate\(-0 [-0-9.e]+ [-0-9.e]+\)"')


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


def to_svg(fig: Figure, overlay: str = "") -> str:
    """The figure as an <svg> element for inline use: no prolog, no metadata, no date; without the
    font list and the null rotation matplotlib writes on every <text> (the page's CSS sets the font)
    and without the indentation. `overlay`: SVG elements drawn last, on top of the figure."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = _METADATA.sub("", _PROLOG.sub("", buffer.getvalue()), count=1)
    svg = _BETWEEN_TAGS.sub("><", _NO_ROTATION.sub("", svg.replace(_FONT_STYLE, "")))
    end = svg.rindex("</svg>")
    return svg[:end] + overlay + svg[end:]


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
    carries the id `cell-T-I-J` and the outline `chosen-T-I-J`, so the figure can be read back.

    Fast enough for 21 bots × 270 cells: each panel is an image of one pixel per cell (a few hundred
    bytes in the SVG, drawn unsmoothed), the layout is fixed (constrained layout measured every text
    of every panel: most of the time), and the values are plain SVG text (_cell_labels)."""
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
    width, height = 2.6 * columns + 1.2, 2.2 * rows + 0.2
    with drawing(name):
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=0.6 / width, right=1 - 1.0 / width, bottom=0.55 / height, top=1 - 0.3 / height,
                            wspace=0.12, hspace=0.45)
        axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
        image, labels = None, []
        for t, ax in enumerate(axes):
            if t >= count:
                ax.set_visible(False)
                continue
            ax.set_facecolor("#dddddd")
            image = ax.imshow(shown[t], cmap="viridis", norm=norm, origin="lower", aspect="auto", interpolation="none")
            is_chosen = chosen is not None and chosen[0] == t
            ax.set_title(f"threshold {thresholds[t]:.4g}{'  (chosen)' if is_chosen else ''}",
                         fontweight="bold" if is_chosen else "normal")
            if len(sl) * len(rr) <= MAX_ANNOTATED_CELLS:
                labels.append((ax, t))
            if is_chosen and chosen is not None:
                outline = Rectangle((chosen[2] - 0.5, chosen[1] - 0.5), 1, 1, fill=False, edgecolor="#e4002b",
                                    linewidth=2.2)
                outline.set_gid(f"chosen-{t}-{chosen[1]}-{chosen[2]}")
                ax.add_patch(outline)
            if t % columns == 0:
                ax.set_ylabel("stop-loss %")
            if t + columns >= count:
                ax.set_xlabel("risk:reward")
                ax.xaxis.set_tick_params(labelbottom=True)  # the last row may be short: its panels show the ticks
        axes[0].set_xticks(np.arange(len(rr)), [f"{v:g}" for v in rr])
        axes[0].set_yticks(np.arange(len(sl)), [f"{100 * v:g}" for v in sl])
        if image is not None and finite.size:  # no colour scale when no cell made enough trades
            fig.colorbar(image, cax=fig.add_axes((1 - 0.85 / width, 0.55 / height, 0.12 / width, 1 - 0.85 / height)),
                         label=f"{objective} (training)")
        overlay = "".join(_cell_labels(fig, ax, t, surface[t], shown[t], norm) for ax, t in labels)
        return to_svg(fig, overlay)


def _cell_labels(fig: Figure, ax: Axes, t: int, values: np.ndarray, shown: np.ndarray, norm: Normalize) -> str:
    """Each cell's value on it (dark on bright colours), as SVG text with the id cell-T-I-J, in one group.

    Written here rather than as matplotlib Text artists: laying out 270 texts per bot was half the
    time of the analyzer report. The layout is fixed, so the data → SVG point mapping is known
    before drawing (SVG y runs downwards). The labels are numbers: nothing to escape."""
    scale = 72.0 / fig.dpi
    height = fig.get_figheight() * 72.0
    parts = []
    for (i, j), value in np.ndenumerate(values):
        label = cell_label(float(value))
        if label:
            x, y = ax.transData.transform((j, i))
            fill = "#000000" if norm(float(shown[i, j])) > 0.6 else "#ffffff"
            # dy: the middle of a digit on the cell's centre (dominant-baseline is not inherited in SVG 1.1)
            parts.append(f'<text id="cell-{t}-{i}-{j}" x="{x * scale:.1f}" y="{height - y * scale:.1f}" dy="0.35em" '
                         f'fill="{fill}">{label}</text>')
    return f'<g style="font-size: 6.5px; text-anchor: middle">{"".join(parts)}</g>' if parts else ""
