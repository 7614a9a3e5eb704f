"""Figures (PDF for papers, PNG previews; matplotlib without pyplot, so no global state):

- ``accuracy_<grouping>``: accuracy per control with Wilson CIs, one marker per model, one panel
  per group (the first panel is all items), chance as a dashed line;
- ``forest_<grouping>``: change in accuracy (control − reference, points) with its cluster-robust
  CI (none with too few clusters), one row per model × control, one panel per group; filled markers
  are significant by the cluster-robust test after the report's correction.

Margins are set by hand: matplotlib's automatic layouts cost more than the drawing itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from volprobe.stats.analysis import Analysis
from volprobe.stats.tables import group_label

PNG_DPI = 100
COLUMNS = 5  # panels per row: the two pools of all items and three groups fit in one


def _figure(n_panels: int, panel_w: float, panel_h: float, left: float, bottom: float, top: float = 0.55):
    """A grid of panels sharing both axes (tick labels only on the outer panels); ``left``/``bottom``/
    ``top`` are margins in inches around the grid."""
    from matplotlib.figure import Figure

    cols = min(COLUMNS, n_panels)
    rows = math.ceil(n_panels / cols)
    gap_w, gap_h = 0.15, 0.4
    width = left + cols * panel_w + (cols - 1) * gap_w + 0.2
    height = top + rows * panel_h + (rows - 1) * gap_h + bottom
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap_w / panel_w, hspace=gap_h / panel_h)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[max(n_panels - cols, 0):n_panels]:  # the lowest panel of each column shows the x labels
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, axes
def _save(fig, folder: Path, name: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        path = folder / f"{name}.{ext}"
        fig.savefig(path, dpi=PNG_DPI)
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


def accuracy_figure(a: Analysis, grouping: str, folder: Path) -> list[Path]:
    panels = _panels(a.accuracy, grouping) if not a.accuracy.empty else []
    if not panels:
        return []
    t = a.accuracy
    controls = [c for c in a.panel.controls if c in set(t["control"])]
    models = [m for m in a.panel.models if m in set(t["model"])]
    longest = max(len(c) for c in controls)
    legend_rows = math.ceil(len(models) / 6)
    fig, axes = _figure(len(panels), max(2.2, 0.4 * len(controls) + 0.6), 2.2, left=0.6,
                        bottom=0.25 + 0.055 * longest, top=0.4 + 0.17 * legend_rows)
    x = np.arange(len(controls))
    width = 0.8 / max(len(models), 1)
    for ax, (key, group, g) in zip(axes, panels):
        for k, model in enumerate(models):
            rows = g[g["model"] == model].set_index("control").reindex(controls)
            acc = 100 * rows["accuracy"].to_numpy(dtype=float)
            err = np.abs(100 * rows[["ci_low", "ci_high"]].to_numpy(dtype=float).T - acc)
            ax.errorbar(x - 0.4 + width * (k + 0.5), acc, yerr=err, fmt="o", ms=3, lw=0.8,
                        label=model if ax is axes[0] else None)
        chance = g["chance"].dropna()
        if not chance.empty:
            ax.axhline(100 * chance.median(), ls="--", lw=0.8, color="grey")
        ax.set_title(group_label(key, group), fontsize=9)
    axes[0].set_ylim(0, 100)
    axes[0].set_xticks(x, controls)
    for ax in axes[:len(panels)]:
        for label in ax.get_xticklabels():
            label.set(rotation=35, ha="right", fontsize=8)
    for ax in axes[::COLUMNS]:
        ax.set_ylabel("accuracy (%)", fontsize=8)
    fig.legend(loc="upper center", ncols=min(len(models), 6), fontsize=8, frameon=False)
    return _save(fig, folder, f"accuracy_{grouping}")


def forest_figure(a: Analysis, grouping: str, folder: Path) -> list[Path]:
    panels = _panels(a.paired, grouping) if not a.paired.empty else []
    if not panels:
        return []
    order = list(dict.fromkeys(zip(a.paired["model"], a.paired["control"])))  # one y position per row
    y_of = {key: len(order) - 1 - i for i, key in enumerate(order)}
    longest = max(len(m) + len(c) + 3 for m, c in order)
    fig, axes = _figure(len(panels), 2.6, 0.25 + 0.16 * len(order), left=0.15 + 0.06 * longest, bottom=0.45)
    for ax, (key, group, g) in zip(axes, panels):
        y = np.array([y_of[k] for k in zip(g["model"], g["control"])])
        change = 100 * g["change"].to_numpy(dtype=float)
        err = np.abs(100 * g[["ci_low", "ci_high"]].to_numpy(dtype=float).T - change)
        sig = g["p_cluster_significant"].to_numpy(dtype=bool)
        ax.errorbar(change, y, xerr=np.nan_to_num(err), fmt="none", ecolor="0.4", lw=1)
        ax.scatter(change[sig], y[sig], s=12, color="C3", zorder=3, label="significant")
        ax.scatter(change[~sig], y[~sig], s=12, facecolors="white", edgecolors="C0", zorder=3, label="not significant")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(group_label(key, group), fontsize=9)
    axes[0].set_yticks(list(y_of.values()), [f"{m} · {c}" for m, c in y_of], fontsize=7)
    axes[0].set_ylim(-0.7, len(order) - 0.3)
    for ax in axes[-min(COLUMNS, len(panels)):]:
        ax.set_xlabel(f"change vs {a.settings.reference} (points)", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncols=2, fontsize=8, frameon=False)
    return _save(fig, folder, f"forest_{grouping}")


def write_figures(a: Analysis, folder: Path) -> list[Path]:
    """An accuracy and a forest figure per grouping of the report (``all`` when there is none)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for grouping in a.settings.by or ("all",):
        paths += accuracy_figure(a, grouping, folder)
        paths += forest_figure(a, grouping, folder)
    return paths
