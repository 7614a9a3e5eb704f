"""Checks of a drawn matplotlib figure that a journal's production office would make (text on the canvas,
one font size, no text over text, the palette, vector PDF). Not a test module; imported by the figure tests."""

from __future__ import annotations

import re
from pathlib import Path


def visible_texts(fig) -> list:
    """(text artist, window extent in pixels) of every non-empty text the figure draws (tick labels outside the
    view are not drawn and do not count)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    drawn = []
    original = Text.draw

    def spy(self, rend):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, rend)

    Text.draw = spy
    try:
        fig.draw(renderer)
    finally:
        Text.draw = original
    return [(t, t.get_window_extent(renderer)) for t in dict.fromkeys(drawn)]


def texts_outside(fig, tolerance_px: float = 0.5) -> list[str]:
    """Texts whose extent leaves the canvas."""
    w, h = fig.bbox.width, fig.bbox.height
    return [f"{t.get_text()!r} at [{bb.x0:.1f}, {bb.y0:.1f}, {bb.x1:.1f}, {bb.y1:.1f}] on a {w:.0f} x {h:.0f} canvas"
            for t, bb in visible_texts(fig)
            if bb.x0 < -tolerance_px or bb.y0 < -tolerance_px or bb.x1 > w + tolerance_px or bb.y1 > h + tolerance_px]


def overlapping_texts(fig, tolerance_px: float = 1.0) -> list[str]:
    """Pairs of (horizontal) texts drawn over each other (rotated texts are left out: their boxes overlap where
    their letters need not)."""
    texts = [(t, bb) for t, bb in visible_texts(fig) if t.get_rotation() % 180 == 0]
    found = []
    for i, (a, ba) in enumerate(texts):
        for b, bb in texts[i + 1:]:
            if min(ba.x1, bb.x1) - max(ba.x0, bb.x0) > tolerance_px and min(ba.y1, bb.y1) - max(ba.y0, bb.y0) > tolerance_px:
                found.append(f"{a.get_text()!r} / {b.get_text()!r}")
    return found


def font_sizes(fig) -> set[float]:
    return {round(t.get_fontsize(), 2) for t, _ in visible_texts(fig)}


def pdf_problems(path: Path) -> list[str]:
    """What keeps a PDF from being vector with embedded TrueType fonts."""
    data = Path(path).read_bytes()
    problems = []
    if not data.startswith(b"%PDF"):
        problems.append("not a PDF")
    if re.search(rb"/Subtype\s*/Type3", data):
        problems.append("Type 3 fonts (journals ask for TrueType or Type 1)")
    if b"/FontFile2" not in data:
        problems.append("no embedded TrueType font")
    return problems
