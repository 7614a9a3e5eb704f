"""Figures a journal accepts (PDF for papers, PNG previews; matplotlib without pyplot, so no global state):

- ``accuracy_<grouping>``: accuracy per control with Wilson CIs, one marker per model, one panel
  per group (the first panels are all items), chance as a dashed line;
- ``forest_<grouping>``: change in accuracy (control − reference, points) with its cluster-robust
  CI (none with too few clusters), one row per control, one marker per model, one panel per group;
  filled markers are significant by the cluster-robust test after the report's correction, open ones not.

Both are dot plots with the controls down the side (labels on the first column only). What a journal asks:

- one width: a single column (89 mm) or the full page (183 mm) (:data:`~volprobe.stats.settings.FIGURE_WIDTHS`);
  panels per row follow from the width, the height from the rows;
- one font size (:data:`FONT_SIZE`, 7 pt) for every text, titles and legends included;
- no text outside the canvas: margins are measured on the drawn figure (every text's extent), not guessed;
- a colour-blind-safe palette (Okabe–Ito, :data:`PALETTE`) and a distinct marker shape per model, so models
  stay apart in greyscale too; significance is shown by fill, not colour;
- vector PDF with TrueType (Type 42) fonts, no raster content; PNG previews at :data:`PNG_DPI`;
- points at the limits (0 % or 100 %) drawn whole inside the frame (limits with a margin, markers not clipped).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from volprobe.stats.analysis import Analysis
from volprobe.stats.settings import FIGURE_WIDTHS
from volprobe.stats.tables import group_label

#: Font size (pt) of every text in a figure.
FONT_SIZE = 7
#: Okabe & Ito's colour-blind-safe palette (blue, orange, bluish green, reddish purple, vermillion, sky blue,
#: yellow, black), one colour per model, with a marker shape per model beside it.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PNG_DPI = 200
PAD_IN = 0.04  # space kept between any text and the canvas edge, inches
MIN_PANEL_IN = 1.0  # narrowest panel, inches
ROW_IN = 0.17  # height of one control's row, inches


def model_style(k: int) -> dict:
    """Colour and marker of the k-th model."""
    return {"color": PALETTE[k % len(PALETTE)], "marker": MARKERS[k % len(MARKERS)]}


def _short_title(key: str, group: str) -> str:
    """A panel's title: the group (the figure's name says the grouping), or which pool of all items."""
    if key != "all":
        return str(group)
    return "all items" if group == "all" else group_label(key, group)


def wrap_label(text: str, width_in: float) -> str:
    """Wrap a label to a width in inches (breaking after spaces, underscores and colons)."""
    chars = max(8, int(width_in * 72 / (0.6 * FONT_SIZE)))
    lines, line = [], ""
    for part in re.split(r"(?<=[_ :])", text):
        if line and len(line) + len(part) > chars:
            lines.append(line.rstrip())
            line = ""
        line += part
    return "\n".join(lines + [line.rstrip()])


class _Grid:
    """Panels on a fixed width; margins, gaps and height fitted to what is drawn."""

    def __init__(self, n_panels: int, width: str, panel_h: float, label_in: float):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.width = FIGURE_WIDTHS[width]
        usable = self.width - label_in - 2 * PAD_IN
        self.cols = max(1, min(n_panels, int((usable + 0.12) // (MIN_PANEL_IN + 0.12))))
        self.panel_w = (usable - 0.12 * (self.cols - 1)) / self.cols  # a first guess; fit() sets the real one
        self.rows = math.ceil(n_panels / self.cols)
        self.panel_h = panel_h
        self.fig = Figure(figsize=(self.width, self.rows * (panel_h + 0.4) + 0.6))
        FigureCanvasAgg(self.fig)
        axes = self.fig.subplots(self.rows, self.cols, squeeze=False, sharex=True, sharey=True)
        self.all_axes = axes
        self.axes = axes.ravel()[:n_panels]
        for ax in axes.ravel()[n_panels:]:
            ax.set_visible(False)
        for ax in self.axes[max(n_panels - self.cols, 0):]:  # the lowest panel of each column shows the x labels
            ax.xaxis.set_tick_params(labelbottom=True)
        for ax in self.axes:
            ax.tick_params(labelsize=FONT_SIZE, length=2.5, pad=2)
        self.legend = None
        self.xlabel = None
        self.fig.subplots_adjust(left=(label_in + PAD_IN) / self.width, right=1 - 0.1 / self.width)

    def set_legend(self, handles, labels, ncols: int) -> None:
        self.legend = self.fig.legend(handles, labels, loc="upper center", ncols=ncols, fontsize=FONT_SIZE,
                                      frameon=False, handletextpad=0.3, columnspacing=1.0, borderaxespad=0.0)

    def set_xlabel(self, text: str) -> None:
        """One x-axis label for the whole grid, centred under it."""
        self.xlabel = self.fig.text(0.5, 0, text, ha="center", va="bottom", fontsize=FONT_SIZE)

    def fit(self) -> None:
        """Margins and gaps from the drawn extents of every text; the width stays, the height follows."""
        fig = self.fig
        previous = None
        for _ in range(5):  # until the measured margins stop changing (ticks can change with the panel size)
            renderer = fig.canvas.get_renderer()
            dpi = fig.dpi
            left = right = bottom = top = inner_w = inner_h = inner_bottom = 0.0
            n = len(self.axes)
            for i, ax in enumerate(self.axes):
                frame = ax.get_window_extent(renderer)
                tight = ax.get_tightbbox(renderer)
                r, c = divmod(i, self.cols)
                over_left, over_right = (frame.x0 - tight.x0) / dpi, (tight.x1 - frame.x1) / dpi
                over_bottom, over_top = (frame.y0 - tight.y0) / dpi, (tight.y1 - frame.y1) / dpi
                left = max(left, over_left) if c == 0 else left
                inner_w = max(inner_w, over_left if c > 0 else 0.0, over_right if c < self.cols - 1 else 0.0)
                right = max(right, over_right) if c == self.cols - 1 or ax is self.axes[-1] else right
                top = max(top, over_top) if r == 0 else top
                inner_h = max(inner_h, over_top if r > 0 else 0.0)
                if i + self.cols < n:  # a panel below: its x labels are hidden, the gap holds the rest
                    inner_bottom = max(inner_bottom, over_bottom)
                else:
                    bottom = max(bottom, over_bottom)
            legend_h = self.legend.get_window_extent(renderer).height / dpi + 0.06 if self.legend is not None else 0.0
            top += legend_h
            if self.xlabel is not None:
                bottom += self.xlabel.get_window_extent(renderer).height / dpi + 0.04
            gap_h = inner_h + inner_bottom + 0.08
            measured = np.round([left, right, top, bottom, inner_w, gap_h], 3)
            if previous is not None and np.array_equal(measured, previous):
                break
            previous = measured
            height = PAD_IN + top + self.rows * self.panel_h + (self.rows - 1) * gap_h + bottom + PAD_IN
            fig.set_size_inches(self.width, height)
            grid_w = self.width - left - right - 2 * PAD_IN
            gap_w = inner_w + 0.1
            panel_w = (grid_w - (self.cols - 1) * gap_w) / self.cols
            fig.subplots_adjust(left=(PAD_IN + left) / self.width, right=1 - (PAD_IN + right) / self.width,
                                bottom=(PAD_IN + bottom) / height, top=1 - (PAD_IN + top) / height,
                                wspace=gap_w / panel_w, hspace=gap_h / self.panel_h)
            self.panel_w = panel_w
            if self.legend is not None:
                self.legend.set_bbox_to_anchor((0.5, 1 - PAD_IN / height), transform=fig.transFigure)
            if self.xlabel is not None:
                self.xlabel.set_position(((PAD_IN + left + grid_w / 2) / self.width, PAD_IN / height))


def _save(fig, folder: Path, name: str) -> list[Path]:
    """PDF (vector, TrueType fonts, no creation date so the bytes repeat) and a PNG preview."""
    import matplotlib

    paths = []
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
        for ext in ("pdf", "png"):
            path = folder / f"{name}.{ext}"
            fig.savefig(path, dpi=PNG_DPI, metadata={"CreationDate": None} if ext == "pdf" else None)
            paths.append(path)
    return paths


def _panels(table: pd.DataFrame, grouping: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(grouping, group, rows) per panel: all items (or their closed and open pools) first, then each
    group of ``grouping``."""
    panels = []
    for key in (("all",) if grouping == "all" else ("all", grouping)):
        part = table[table["grouping"] == key]
        panels += [(key, group, part[part["group"] == group]) for group in dict.fromkeys(part["group"])]
    return panels


def _label_width(labels) -> float:
    """A first guess (inches) of the widest row label at :data:`FONT_SIZE` (the fit measures the real one)."""
    return 0.1 + 0.56 * FONT_SIZE / 72 * max((len(str(s)) for s in labels), default=4)


def _dot_rows(ax, y_of: dict, rows: pd.DataFrame, value: str, low: str, high: str, models: list[str],
              scale: float, filled=None) -> None:
    """One marker per (control, model) at its value with a horizontal CI; models offset within a row."""
    n = max(len(models), 1)
    for k, model in enumerate(models):
        g = rows[rows["model"] == model]
        if g.empty:
            continue
        style = model_style(k)
        y = np.array([y_of[c] for c in g["control"]], dtype=float) + (k - (n - 1) / 2) * (0.6 / n)
        x = scale * g[value].to_numpy(dtype=float)
        lo, hi = scale * g[low].to_numpy(dtype=float), scale * g[high].to_numpy(dtype=float)
        has_ci = ~(np.isnan(lo) | np.isnan(hi))
        ax.hlines(y[has_ci], lo[has_ci], hi[has_ci], color=style["color"], lw=0.8, clip_on=False, zorder=2)
        solid = np.ones(len(g), dtype=bool) if filled is None else g[filled].to_numpy(dtype=bool)
        for mask, face in ((solid, style["color"]), (~solid, "white")):
            if mask.any():
                ax.plot(x[mask], y[mask], ls="none", marker=style["marker"], ms=3.2, mew=0.8, mec=style["color"],
                        mfc=face, clip_on=False, zorder=3)


def _legend(grid: _Grid, models: list[str], significance: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", ms=3.2, mew=0.8, mfc=model_style(k)["color"],
                      mec=model_style(k)["color"], marker=model_style(k)["marker"]) for k in range(len(models))]
    labels = list(models)
    if significance:
        handles += [Line2D([], [], ls="none", marker="o", ms=3.2, mew=0.8, mfc="black", mec="black"),
                    Line2D([], [], ls="none", marker="o", ms=3.2, mew=0.8, mfc="white", mec="black")]
        labels += ["significant", "not significant"]
    per_row = max(1, int(grid.width / 1.3))
    grid.set_legend(handles, labels, ncols=min(len(labels), per_row))


def _control_rows(a: Analysis, t, grouping: str, width: str):
    """Panels of ``t`` for ``grouping``, the controls (top to bottom, in the runs' order) and models it holds,
    each control's row position and the grid; None when there is nothing to draw."""
    panels = _panels(t, grouping) if not t.empty else []
    if not panels:
        return None
    controls = [c for c in a.panel.controls if c in set(t["control"])]
    models = [m for m in a.panel.models if m in set(t["model"])]
    y_of = {c: len(controls) - 1 - i for i, c in enumerate(controls)}
    return panels, controls, models, y_of, _Grid(len(panels), width, 0.1 + ROW_IN * len(controls),
                                                   _label_width(controls))


def accuracy_figure(a: Analysis, grouping: str, folder: Path, width: str = "double") -> list[Path]:
    rows = _control_rows(a, a.accuracy, grouping, width)
    if rows is None:
        return []
    panels, controls, models, y_of, grid = rows
    for ax, (key, group, g) in zip(grid.axes, panels):
        _dot_rows(ax, y_of, g, "accuracy", "ci_low", "ci_high", models, 100)
        chance = g["chance"].dropna()
        if not chance.empty:
            ax.axvline(100 * chance.median(), ls="--", lw=0.6, color="0.5", zorder=1)
        ax.set_title(wrap_label(_short_title(key, group), grid.panel_w), fontsize=FONT_SIZE, pad=3)
    first = grid.axes[0]
    first.set_xlim(-5, 105)  # markers at 0 and 100 % sit whole inside the frame
    first.set_xticks([0, 25, 50, 75, 100])
    first.set_ylim(-0.6, len(controls) - 0.4)
    first.set_yticks(list(y_of.values()), list(y_of))
    grid.set_xlabel("accuracy (%)")
    _legend(grid, models, significance=False)
    grid.fit()
    return _save(grid.fig, folder, f"accuracy_{grouping}")


def forest_figure(a: Analysis, grouping: str, folder: Path, width: str = "double") -> list[Path]:
    rows = _control_rows(a, a.paired, grouping, width)
    if rows is None:
        return []
    panels, controls, models, y_of, grid = rows
    for ax, (key, group, g) in zip(grid.axes, panels):
        ax.axvline(0, color="black", lw=0.6, zorder=1)
        _dot_rows(ax, y_of, g, "change", "ci_low", "ci_high", models, 100, filled="p_cluster_significant")
        ax.set_title(wrap_label(_short_title(key, group), grid.panel_w), fontsize=FONT_SIZE, pad=3)
    values = 100 * a.paired[["change", "ci_low", "ci_high"]].to_numpy(dtype=float)
    lo, hi = np.nanmin(values), np.nanmax(values)
    span = max(hi - lo, 1.0)
    grid.axes[0].set_xlim(min(lo, 0) - 0.06 * span, max(hi, 0) + 0.06 * span)
    grid.axes[0].set_ylim(-0.6, len(controls) - 0.4)
    grid.axes[0].set_yticks(list(y_of.values()), list(y_of))
    grid.set_xlabel(f"change vs {a.settings.reference} (points)")
    _legend(grid, models, significance=True)
    grid.fit()
    return _save(grid.fig, folder, f"forest_{grouping}")


def write_figures(a: Analysis, folder: Path, width: str = "double") -> list[Path]:
    """An accuracy and a forest figure per grouping of the report (``all`` when there is none), ``width``
    ``single`` or ``double`` column."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for grouping in a.settings.by or ("all",):
        paths += accuracy_figure(a, grouping, folder, width)
        paths += forest_figure(a, grouping, folder, width)
    return paths
