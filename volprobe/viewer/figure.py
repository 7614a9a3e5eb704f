"""``probe figure``: one item as a paper-ready panel (PDF and PNG).

A column per control: the evidence planes it presented (axial, and coronal for superior–inferior items), in
the window of the models' preprocessing, the structures the question names outlined (vector contours, in
the Okabe–Ito colours of the item browser); under each column each model's parsed answer, ✓ right or
✗ wrong under that control's gold. Above: the question, its options with the gold, the counterfactual golds
and the structures' colours. The width is a journal's single column or page (89 or 183 mm), every text one
size (:data:`~volprobe.stats.figures.FONT_SIZE`); the PDF keeps text and outlines as vectors (TrueType fonts),
the CT images as images.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from volprobe.errors import InvalidValueError, VolprobeError
from volprobe.stats.figures import FONT_SIZE, PAD_IN, wrap_label
from volprobe.stats.settings import FIGURE_WIDTHS
from volprobe.viewer.browser import record_files, records_of, scan_records
from volprobe.viewer.evidence import ItemEvidence, item_evidence
from volprobe.viewer.sources import CaseImages, load_items
from volprobe.viewer.views import OUTLINE_COLOURS, PlaneView

LINE_IN = FONT_SIZE * 1.25 / 72  # one line of text, inches
CHAR_IN = FONT_SIZE * 0.6 / 72  # an average character (DejaVu Sans, a little over), inches
RIGHT, WRONG = "#0072B2", "#D55E00"  # Okabe–Ito blue and vermillion
MIN_COLUMN_IN = 0.72  # narrowest column of images, inches


def load_item_evidence(item_id: str, runs: Sequence[str | Path], items: Sequence[str | Path] = (),
                       masks: Sequence[str | Path] = ()) -> ItemEvidence:
    """The rows of one item over the runs (see :func:`~volprobe.viewer.evidence.item_evidence`).

    Raises:
        VolprobeError: the item is in no record of the runs, or in no items file (its volume is unknown).
    """
    files = record_files(runs)
    records = records_of(files, {item_id}).get(item_id)
    if not records:
        raise VolprobeError(f"item {item_id!r} is in no record of {', '.join(map(str, runs))}; item ids look like "
                            "spatial/CASE/HASH (see the runs' records.jsonl or report.html)")
    index = load_items(runs, items)
    item = index.items.get(item_id)
    if item is None:
        where = "; ".join(index.notes) or f"{len(index.by_file)} items file(s) read"
        raise VolprobeError(f"item {item_id!r} is in no items file ({where}); give the items file with --items")
    images = CaseImages(index.by_file[index.files[item_id]], index.files[item_id], masks)
    try:
        ev = item_evidence(item_id, records, item, images, scan_records(files)[2])
    finally:
        images.close()
    return ev


def _fit_text(text: str, width_in: float, bold: bool = False) -> str:
    """``text`` cut with an ellipsis to about ``width_in`` inches."""
    chars = max(4, int(width_in / (CHAR_IN * (1.12 if bold else 1.0))))
    return text if len(text) <= chars else text[: max(1, chars - 1)] + "…"


def _draw_view(ax, view: PlaneView, window, value_range, structures: Sequence[str]) -> None:
    pixels = window.to_uint8(view.image, value_range)
    h_mm, w_mm = view.image.shape[0] * view.pixel_mm[0], view.image.shape[1] * view.pixel_mm[1]
    ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255, extent=(0, w_mm, h_mm, 0),
              interpolation="bilinear")
    ys = (np.arange(view.image.shape[0]) + 0.5) * view.pixel_mm[0]
    xs = (np.arange(view.image.shape[1]) + 0.5) * view.pixel_mm[1]
    for k, name in enumerate(structures):
        mask = view.masks.get(name)
        if mask is not None and mask.any():
            ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors=[OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]],
                       linewidths=0.7)
    ax.set_xlim(0, w_mm)
    ax.set_ylim(h_mm, 0)
    ax.set_axis_off()


def draw_item_figure(ev: ItemEvidence, width: str = "double", controls: Sequence[str] | None = None):
    """The panel as a matplotlib Figure (no pyplot). Controls are laid out in columns of at least
    :data:`MIN_COLUMN_IN`; when they do not fit the width in one band, in several bands one under another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if width not in FIGURE_WIDTHS:
        raise InvalidValueError(f"--width must be one of {', '.join(FIGURE_WIDTHS)}, got {width!r}")
    rows = [r for r in ev.rows if controls is None or r.control in controls]
    if controls is not None:
        unknown = [c for c in controls if c not in {r.control for r in ev.rows}]
        if unknown:
            raise InvalidValueError(f"control(s) {', '.join(unknown)} not in the records of item {ev.item_id} "
                                    f"(it has {', '.join(r.control for r in ev.rows)})")
        rows.sort(key=lambda r: list(controls).index(r.control))
    models = list(dict.fromkeys(a.model for r in rows for a in r.answers))
    planes = list(dict.fromkeys(v.plane for r in rows for s in r.shown[:1] for v in s.views)) or ["axial"]
    W = FIGURE_WIDTHS[width]
    label_w = min(1.5, max(0.5, CHAR_IN * max((len(m) for m in models), default=4) + 0.08))
    per_band = max(1, min(len(rows), int((W - 2 * PAD_IN - label_w) // MIN_COLUMN_IN)))
    bands = [rows[i:i + per_band] for i in range(0, len(rows), per_band)] or [[]]
    col_w = (W - 2 * PAD_IN - label_w) / per_band
    plane_h = {}  # image height per plane: the tallest view of that plane at the column width
    for plane in planes:
        ratios = [v.image.shape[0] * v.pixel_mm[0] / (v.image.shape[1] * v.pixel_mm[1])
                  for r in rows for s in r.shown[:1] for v in s.views if v.plane == plane]
        plane_h[plane] = col_w * 0.94 * (max(ratios) if ratios else 1.0)
    chars = int((W - 2 * PAD_IN) / CHAR_IN)
    header = textwrap.wrap(ev.question, chars) or [""]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    options = "   ".join(f"{letters[i]}. {o}" for i, o in enumerate(ev.options)) if ev.options else ""
    gold = f"gold: {ev.gold}" + "".join(f"; {c}: {v}" for c, v in ev.counterfactual.items() if v is not None)
    header += textwrap.wrap((options + "    " if options else "") + gold, chars)
    titles = {r.control: wrap_label(r.control, col_w * 0.85).split("\n") for r in rows}
    golds = {r.control: wrap_label(f"gold: {r.gold}", col_w * 0.9).split("\n") if r.gold_changed else [] for r in rows}

    def title_lines(band) -> int:
        return max((len(titles[r.control]) + len(golds[r.control]) for r in band), default=1)

    band_h = [title_lines(b) * LINE_IN + sum(plane_h.values()) + 0.04 * len(planes) + 0.04 + len(models) * LINE_IN
              for b in bands]
    height = (PAD_IN + len(header) * LINE_IN + (LINE_IN if ev.structures else 0) + 0.06 + sum(band_h)
              + 0.12 * (len(bands) - 1) + PAD_IN)
    fig = Figure(figsize=(W, height))
    FigureCanvasAgg(fig)

    def fy(y_in: float) -> float:  # inches from the top → figure fraction
        return 1 - y_in / height

    y = PAD_IN
    for line in header:
        fig.text(PAD_IN / W, fy(y), line, ha="left", va="top", fontsize=FONT_SIZE)
        y += LINE_IN
    if ev.structures:
        x = PAD_IN
        for k, name in enumerate(ev.structures):
            colour = OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]
            fig.text(x / W, fy(y), "■", color=colour, ha="left", va="top", fontsize=FONT_SIZE)
            fig.text((x + 2.2 * CHAR_IN) / W, fy(y), name, ha="left", va="top", fontsize=FONT_SIZE)
            x += (len(name) + 6) * CHAR_IN
        y += LINE_IN
    y += 0.06
    x0 = PAD_IN + label_w
    for band in bands:
        for c, row in enumerate(band):
            cx = x0 + (c + 0.5) * col_w
            for k, line in enumerate(titles[row.control]):
                fig.text(cx / W, fy(y + k * LINE_IN), _fit_text(line, col_w * 0.85, bold=True), ha="center",
                         va="top", fontsize=FONT_SIZE, weight="bold")
            for k, line in enumerate(golds[row.control], start=len(titles[row.control])):
                fig.text(cx / W, fy(y + k * LINE_IN), _fit_text(line, col_w * 0.95), ha="center", va="top",
                         fontsize=FONT_SIZE)
        y += title_lines(band) * LINE_IN
        for plane in planes:
            h = plane_h[plane]
            for c, row in enumerate(band):
                shown = row.shown[0] if row.shown else None
                view = next((v for v in shown.views if v.plane == plane), None) if shown else None
                ax = fig.add_axes([(x0 + (c + 0.03) * col_w) / W, fy(y + h), 0.94 * col_w / W, h / height])
                if view is None:
                    ax.set_axis_off()
                    if plane == planes[0]:
                        ax.text(0.5, 0.5, "no image", ha="center", va="center", fontsize=FONT_SIZE, color="0.35",
                                transform=ax.transAxes)
                else:
                    _draw_view(ax, view, shown.window, shown.value_range, ev.structures)
            y += h + 0.04
        y += 0.04
        for model in models:
            fig.text(PAD_IN / W, fy(y), _fit_text(model, label_w - 0.05), ha="left", va="top", fontsize=FONT_SIZE)
            for c, row in enumerate(band):
                answer = next((a for a in row.answers if a.model == model), None)
                if answer is None:
                    continue
                mark = "✓" if answer.correct else "✗"
                parsed = answer.parsed if answer.parsed is not None else "–"
                text = _fit_text(parsed, col_w - 0.04 - 2 * CHAR_IN) + " " + mark
                fig.text((x0 + (c + 0.5) * col_w) / W, fy(y), text, ha="center", va="top", fontsize=FONT_SIZE,
                         color=RIGHT if answer.correct else WRONG)
            y += LINE_IN
        y += 0.12
    return fig


def item_figure(item_id: str, runs: Sequence[str | Path], out: str | Path, *, items: Sequence[str | Path] = (),
                masks: Sequence[str | Path] = (), controls: Sequence[str] | None = None,
                width: str = "double") -> list[Path]:
    """Write the panel of ``item_id`` to ``out`` (PDF) and the same name with ``.png``; returns both paths."""
    import matplotlib

    out = Path(out)
    if out.suffix.lower() != ".pdf":
        raise InvalidValueError(f"--out {out}: give a .pdf path (a .png preview is written beside it)")
    ev = load_item_evidence(item_id, runs, items, masks)
    fig = draw_item_figure(ev, width, controls)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".png")]
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig.savefig(paths[0], dpi=300, metadata={"CreationDate": None})
        fig.savefig(paths[1], dpi=200)
    return paths
