"""The report's figures meet a journal's rules: the column width, one font size, every text on the canvas and
none over another, the Okabe–Ito palette, points at 0 or 100 % whole inside the frame, vector PDF."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_hex

import volprobe.stats.figures as figures
from figurechecks import font_sizes, overlapping_texts, pdf_problems, texts_outside, visible_texts
from volprobe.controls import get_control
from volprobe.stats.report import make_report
from volprobe.stats.settings import FIGURE_WIDTHS, ReportSettings
from volprobe.stats.synthetic import SyntheticModel, synthetic_items, write_synthetic_runs

CONTROLS = [get_control(c) for c in ("full", "text_only", "blank", "single_slice:evidence", "shuffled_slices",
                                     "mirror_lr", "flip_si")]
MODELS = [SyntheticModel("a-model-with-a-long-name", accuracy=0.99999, patient_sd=0.0),
          SyntheticModel("ignorer", uses_volume=False, blind_accuracy=0.55), SyntheticModel("random", random=True)]


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("figs")
    runs = write_synthetic_runs(root / "runs", MODELS, synthetic_items(400, 40, seed=2), CONTROLS, seed=5)
    # two groupings: the category figures have 7 panels, more than one row at any width
    report = make_report(runs, root / "report", ReportSettings(by=("category", "evidence"), assess_references=True,
                                                               n_perm=100), figures=False)
    return report.analysis


def drawn(analysis, monkeypatch, tmp_path, **width):
    """The figures write_figures makes, by name (caught before saving)."""
    found = {}
    monkeypatch.setattr(figures, "_save", lambda fig, folder, name: found.setdefault(name, fig) and [])
    figures.write_figures(analysis, tmp_path, **width)
    assert set(found) == {f"{kind}_{g}" for kind in ("accuracy", "forest") for g in ("category", "evidence")}
    return found


@pytest.mark.parametrize("width", ["double", "single"])
def test_every_text_lies_on_the_canvas_at_one_size_and_none_over_another(analysis, monkeypatch, tmp_path, width):
    problems = []
    for name, fig in drawn(analysis, monkeypatch, tmp_path, **({} if width == "double" else {"width": width})).items():
        problems += [f"{name}: outside the canvas: {t}" for t in texts_outside(fig)]
        problems += [f"{name}: text over text: {t}" for t in overlapping_texts(fig)]
        if len(font_sizes(fig)) != 1:
            problems.append(f"{name}: font sizes {sorted(font_sizes(fig))}")
        if fig.get_figwidth() != pytest.approx(FIGURE_WIDTHS[width]) or fig.get_figheight() > 9.5:  # a page
            problems.append(f"{name}: {fig.get_figwidth():.2f} x {fig.get_figheight():.2f} in")
    assert not problems, "\n".join(problems[:20])
    assert font_sizes(fig) == {figures.FONT_SIZE}


def test_palette_and_points_at_the_limits(analysis, monkeypatch, tmp_path):
    fig = drawn(analysis, monkeypatch, tmp_path)["accuracy_category"]
    visible_texts(fig)  # drawn
    renderer = fig.canvas.get_renderer()
    at_100 = 0
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        frame = ax.get_window_extent(renderer)
        for line in ax.get_lines():
            if line.get_marker() in (None, "None", "") or not len(line.get_xdata()):
                continue
            assert to_hex(line.get_markeredgecolor()).upper() in figures.PALETTE
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                px, py = ax.transData.transform((x, y))
                radius = line.get_markersize() / 2 * fig.dpi / 72
                assert frame.x0 + radius <= px <= frame.x1 - radius and frame.y0 + radius <= py <= frame.y1 - radius, \
                    (x, y, "marker not whole inside the frame")
                at_100 += x == 100
    assert at_100 > 0  # the perfect model's points sit at 100 %


def test_pdf_is_vector_with_truetype_fonts(analysis, tmp_path):
    paths = figures.write_figures(analysis, tmp_path)
    pdfs = [p for p in paths if p.suffix == ".pdf"]
    assert len(pdfs) == 4 and {p.with_suffix(".png") for p in pdfs} <= set(paths)
    for pdf in pdfs:
        assert not pdf_problems(pdf), (pdf.name, pdf_problems(pdf))
        assert b"/Subtype /Image" not in pdf.read_bytes()  # no raster content
    again = figures.write_figures(analysis, tmp_path / "again")
    assert [p.read_bytes() for p in again if p.suffix == ".pdf"] == [p.read_bytes() for p in pdfs]  # reproducible
