"""report.html and ``probe figure``: what each control presented, in patient orientation, with the masks moved as
the control moved the anatomy; the item browser's sample, rows and outcome flags against the raw records; the
page self-contained and working in a real browser (headless Chromium); the item figure within its canvas."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from chromium import Browser, find_chromium
from figurechecks import font_sizes, overlapping_texts, pdf_problems, texts_outside
from volprobe.cli import main
from volprobe.controls import STANDARD_CONTROLS, Control, ControlContext, ControlledInput, get_control
from volprobe.items import Item, read_items
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.volume import Volume
from volprobe.viewer import BrowserSettings, html_report_writer
from volprobe.viewer.browser import build_browser, sample_items
from volprobe.viewer.evidence import item_evidence
from volprobe.viewer.figure import draw_item_figure, load_item_evidence
from volprobe.viewer.sources import CaseImages, load_items
from volprobe.viewer.views import (SOFT_TISSUE_WINDOW, DisplayWindow, Presentation, params_differ, plane_view,
                                   present)

CONTROLS = [get_control(c) for c in STANDARD_CONTROLS]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Four phantoms (RAS, LPS, LAS, oblique) with masks, their questions, and oracle and random runs under every
    standard control: the demo's pipeline at a small size."""
    from volprobe.controls.counterfactuals import relations_for_case
    from volprobe.probes.models.base import load_model
    from volprobe.probes.questions import QuestionSettings, generate_questions, load_cases, write_question_set
    from volprobe.probes.run.engine import run
    from volprobe.segmentation.phantoms.generate import generate_phantoms

    root = tmp_path_factory.mktemp("study")
    cases = generate_phantoms(root / "phantoms", 4, seed=3, orientation="mixed", progress=False)
    graphs = []
    for c in cases:
        target = root / "relations" / f"{c['case_id']}.json"
        target.parent.mkdir(exist_ok=True)
        relations_for_case(root / "phantoms" / c["files"]["ct"]["path"], root / "phantoms" / c["files"]["seg"]["path"],
                           target, case=c["case_id"])
        graphs.append(target)
    qs = generate_questions(load_cases(graphs), QuestionSettings(per_case=24, seed=0, exclude=("vertebrae_*",)))
    items_path, _ = write_question_set(qs, root / "items" / "items.jsonl", inputs=graphs)
    items = read_items(items_path)
    runs = []
    for label in ("oracle", "random"):
        run(items, load_model(label), CONTROLS, root / "runs" / label, seed=0, model_label=label,
            items_path=items_path, progress=False)
        runs.append(root / "runs" / label)
    return SimpleNamespace(root=root, items_path=items_path, items=items, runs=runs, cases=cases)


def raw_records(runs) -> list[dict]:
    return [json.loads(line) for r in runs for line in open(Path(r) / "records.jsonl")]


# -- planes in patient orientation ------------------------------------------------------------

def _rotation_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


ORIENTATIONS = {"RAS": np.diag([1.0, 1.0, 1.0]), "LPS": np.diag([-1.0, -1.0, 1.0]), "LAS": np.diag([-1.0, 1.0, 1.0]),
                "oblique": _rotation_z(12) @ np.diag([-1.0, -1.0, 1.0])}


def marker_volume(orientation: str) -> Volume:
    """A 40 x 36 x 30 grid (3 x 3 x 4 mm) in the given orientation, centred on the patient origin, holding in
    patient space a column on the patient's right (300 HU), one anterior (600 HU) and a superior slab (900 HU)."""
    shape, spacing = (40, 36, 30), np.array([3.0, 3.0, 4.0])
    affine = np.eye(4)
    affine[:3, :3] = ORIENTATIONS[orientation] * spacing
    affine[:3, 3] = -affine[:3, :3] @ (np.array(shape) - 1) / 2
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    x, y, z = (ijk @ affine[:3, :3].T + affine[:3, 3]).T
    values = np.full(len(x), -1000.0)
    values[(x > 25) & (abs(y) < 10)] = 300  # patient's right (RAS +x)
    values[(y > 25) & (abs(x) < 10)] = 600  # anterior
    values[(z > 35) & (abs(x) < 10) & (abs(y) < 10)] = 900  # superior
    return Volume(values.reshape(shape).astype(np.int16), affine)


def _centre(image: np.ndarray, value: float) -> tuple[float, float]:
    rows, cols = np.nonzero(image == value)
    return rows.mean() / image.shape[0], cols.mean() / image.shape[1]


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_planes_are_in_radiological_orientation_whatever_the_array_order(orientation):
    vol = marker_volume(orientation)
    shown = Presentation("full", ControlledInput(vol, "k"))
    middle = {p: vol.shape[vol.array_axis(a)] // 2 for p, a in (("axial", "si"), ("coronal", "ap"), ("sagittal", "lr"))}
    axial = plane_view(shown, "axial", middle["axial"], []).image
    assert _centre(axial, 300)[1] < 0.4  # the patient's right on the viewer's left
    assert _centre(axial, 600)[0] < 0.4  # anterior at the top
    coronal = plane_view(shown, "coronal", middle["coronal"], []).image
    assert _centre(coronal, 900)[0] < 0.4 and _centre(coronal, 300)[1] < 0.4  # superior at the top, right on the left
    sagittal = plane_view(shown, "sagittal", middle["sagittal"], []).image
    assert _centre(sagittal, 900)[0] < 0.4 and _centre(sagittal, 600)[1] < 0.4  # superior at the top, anterior left
    view = plane_view(shown, "coronal", middle["coronal"], [])
    assert view.pixel_mm == (4.0, 3.0)  # rows run along the 4 mm axis: proportions kept in mm


@pytest.mark.parametrize("generation, windows, label", [
    ({"preprocessing": {"name": "m3d", "window": [-160, 240]}}, ((-160.0, 240.0),), "m3d"),
    ({"preprocessing": {"name": "m3d+window", "window": None}}, None, "min-max"),
    ({"slices": {"name": "medgemma", "windows": [[-1024, 1024], [-135, 215], [0, 80]]}},
     ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0)), "RGB"),
    ({"do_sample": False}, (SOFT_TISSUE_WINDOW,), "no preset recorded"),
])
def test_the_window_is_the_one_the_records_state(generation, windows, label):
    w = DisplayWindow.from_generation(generation)
    assert w.windows == windows and label in w.label
    hu = np.array([[-2000.0, -160.0, 40.0, 240.0, 3000.0]])
    out = w.to_uint8(hu, (-1000.0, 1000.0))
    if windows is None:  # min-max of the volume
        assert out.tolist() == [[0, 107, 133, 158, 255]]
    elif len(windows) == 1:
        assert out.tolist() == [[0, 0, 128, 255, 255]]
    else:
        assert out.shape == (1, 5, 3) and out[0, 2].tolist() == [132, 128, 128]


# -- what each control presented ------------------------------------------------------------

def test_the_masks_move_as_each_control_moves_the_anatomy(study):
    item = next(i for i in study.items if "lr" in i.evidence["axes"] and "_left" in "".join(i.evidence["structures"]))
    images = CaseImages(study.items, study.items_path)
    volume, labels = images.volume(item.case), images.labels(item.case)
    assert labels is not None  # found beside the CT and checked against the item's hash
    ctx = ControlContext(seed=0, cases=images.cases, load_case=images.volume)
    records = {(r["control"]): r for r in raw_records(study.runs[:1]) if r["item_id"] == item.id}
    for control in CONTROLS:
        p = present(control, item, volume, labels, ctx, load_labels=images.labels)
        rec = records[control.label]
        assert not params_differ(p.cin, rec["control_params"], rec["control_seed"]), control.label  # as in the run
        if control.removes_image or p.volume is None:
            assert p.labels is None and p.note
            continue
        assert p.labels.shape == p.volume.shape, control.label
        if control.reference:
            assert p.labels is labels
        elif control.changes_geometry:
            moved = control.transform_labels(labels)
            assert np.array_equal(p.labels.labels, moved.labels) and p.labels.names == moved.names
        elif "source_case" in p.cin.params:  # another patient's volume: that patient's masks
            other = images.labels(p.cin.params["source_case"])
            assert np.array_equal(p.labels.labels, other.labels)
        else:  # slices kept or reordered: each presented slice's labels are those of the CT slice it shows
            axis = volume.axial_axis
            for k in range(p.volume.shape[axis]):
                ct = np.take(p.volume.array, k, axis=axis)
                source = [j for j in range(volume.shape[axis]) if np.array_equal(np.take(volume.array, j, axis=axis), ct)]
                assert len(source) == 1
                assert np.array_equal(np.take(p.labels.labels, k, axis=axis), np.take(labels.labels, source[0], axis=axis))
    images.close()


def test_a_control_that_computes_new_values_gets_no_outlines(study):
    class Noise(Control):
        name = "noise_for_test"
        statement = "adds noise"

        def apply(self, volume, item, ctx):
            return self.output(item, volume.with_array(volume.array + np.random.default_rng(0).normal(0, 9, volume.shape)))

    item = study.items[0]
    images = CaseImages(study.items, study.items_path)
    p = present(Noise(), item, images.volume(item.case), images.labels(item.case), ControlContext(seed=0))
    assert p.labels is None and "computes new voxel values" in p.note
    images.close()


def test_masks_that_are_not_the_items_own_are_not_drawn(study, tmp_path):
    """Masks found beside the CT whose content differs from those the items were made from give no outlines."""
    from volprobe.items import write_items
    from volprobe.segmentation.masks import load_masks, save_label_map
    from volprobe.segmentation.volume import load_volume

    item = study.items[0]
    ct = study.root / "phantoms" / f"{item.case}.nii.gz"
    labels = load_masks(study.root / "phantoms" / f"{item.case}_seg.nii.gz", load_volume(ct))
    shutil.copy(ct, tmp_path / ct.name)
    save_label_map(LabelMap(np.roll(labels.labels, 3, axis=0), labels.affine, labels.names),
                   tmp_path / f"{item.case}_seg.nii.gz")
    moved = [Item.from_dict({**i.to_dict(), "volume_path": ct.name}) for i in study.items if i.case == item.case]
    write_items(moved, tmp_path / "items.jsonl")
    images = CaseImages(moved, tmp_path / "items.jsonl")
    assert images.labels(item.case) is None
    assert "not those the items were made from" in images.notes[item.case]
    images.close()
    shutil.copy(study.root / "phantoms" / f"{item.case}_seg.nii.gz", tmp_path / "masks.nii.gz")
    (tmp_path / "masks").mkdir()
    shutil.copy(study.root / "phantoms" / f"{item.case}_seg.nii.gz", tmp_path / "masks" / f"{item.case}.nii.gz")
    images = CaseImages(moved, tmp_path / "items.jsonl", masks_dirs=[tmp_path / "masks"])  # --masks comes first
    assert images.labels(item.case) is not None
    images.close()


# -- the browser's data ---------------------------------------------------------------------------

def test_sampling_per_category_is_seeded_and_all_keeps_everything():
    categories = {f"i{k}": ("a" if k < 10 else "b") for k in range(13)}
    chosen = sample_items(categories, 4, seed=1)
    assert sum(categories[i] == "a" for i in chosen) == 4 and sum(categories[i] == "b" for i in chosen) == 3
    assert chosen == sample_items(categories, 4, seed=1) and chosen != sample_items(categories, 4, seed=2)
    assert chosen == [i for i in categories if i in chosen]  # in the records' order
    assert sample_items(categories, 0, seed=1) == list(categories)


def test_browser_rows_answers_and_flags_match_the_records(study):
    data = build_browser(study.runs, BrowserSettings(per_category=3))
    records = raw_records(study.runs)
    by_category: dict[str, set] = {}
    for r in records:
        by_category.setdefault(r["category"], set()).add(r["item_id"])
    assert data.total_items == len(study.items)
    assert sorted(data.categories) == sorted(by_category)
    shown = {}
    for it in data.items:
        shown.setdefault(it["category"], []).append(it["id"])
    assert {c: len(v) for c, v in shown.items()} == {c: min(3, len(v)) for c, v in by_category.items()}
    assert data.blind == {"random": "ignores any image (uniform guess over the options)"}
    index = {(r["item_id"], r["control"], r["model"]): r for r in records}
    images_seen = 0
    for it in data.items:
        assert [row["control"] for row in it["rows"]] == [c.label for c in CONTROLS
                                                          if (it["id"], c.label, "oracle") in index]
        for row in it["rows"]:
            for a in row["answers"]:
                rec = index[(it["id"], row["control"], a["model"])]
                ref = index[(it["id"], "full", a["model"])]
                expect = ["right" if rec["correct"] else "wrong"]
                if row["control"] != "full" and rec["parsed"] != ref["parsed"]:
                    expect.append("changed")
                if rec["gold"] != rec["gold_original"]:
                    expect.append("followed" if rec["parsed"] == rec["gold"] else "not_followed")
                assert a["flags"] == expect and a["raw"] == rec["raw_output"] and a["parsed"] == rec["parsed"]
            images = [im for s in row["shown"] for im in s["images"]]
            facts = get_control(row["control"])
            if not facts.needs_volume:
                assert not images
                continue
            axes = next(i for i in study.items if i.id == it["id"]).evidence["axes"]
            planes = [im["plane"] for im in images]
            assert planes[0] == "axial" and (("coronal" in planes) == ("si" in axes) or len(planes) == 1)
            for im in images:
                png = base64.b64decode(data.thumbnails[im["src"]].split(",", 1)[1])
                from PIL import Image

                with Image.open(io.BytesIO(png)) as decoded:
                    assert decoded.size == (im["w"], im["h"]) and max(decoded.size) == 128
                images_seen += 1
    assert images_seen > 0


def test_outlines_use_the_question_s_structures_in_their_colours(study):
    item = next(i for i in study.items if len(i.evidence["structures"]) == 2 and "si" not in i.evidence["axes"])
    recs = [r for r in raw_records(study.runs) if r["item_id"] == item.id]
    images = CaseImages(study.items, study.items_path)
    ev = item_evidence(item.id, recs, item, images, [c.label for c in CONTROLS])
    images.close()
    full = next(r for r in ev.rows if r.control == "full").shown[0].views[0]
    assert set(full.masks) <= set(item.evidence["structures"]) and any(m.any() for m in full.masks.values())


# -- the page --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(study, tmp_path_factory):
    from volprobe.stats import ReportSettings, make_report

    out = tmp_path_factory.mktemp("page") / "report"
    report = make_report(study.runs, out, ReportSettings(by=("category",), n_perm=100),
                         extra=html_report_writer(study.runs, BrowserSettings(per_category=3)))
    return report


def _page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="browser-data">(.*?)</script>', text, flags=re.S)
    return json.loads(found.group(1))


def test_report_html_is_one_self_contained_file(page):
    path = page.out / "report.html"
    text = path.read_text(encoding="utf-8")
    references = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert references and all(r.startswith(("data:", "#")) for r in references), \
        [r for r in references if not r.startswith(("data:", "#"))]
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    data = _page_data(path)
    assert len(data["items"]) > 0 and data["thumbnails"]
    assert text.count('<img class="figure"') == 2  # the accuracy and forest figures
    manifest = json.loads((page.out / "manifest.json").read_text())
    assert "report.html" in manifest["outputs"]
    assert path.stat().st_size < 5_000_000


def test_browser_in_headless_chromium(page, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it): "
                    "report.html's browser test needs it")
    path = page.out / "report.html"
    data = _page_data(path)
    n = len(data["items"])
    category = sorted(data["categories"])[0]
    n_category = sum(it["category"] == category for it in data["items"])
    followed = sum(any(a["model"] == "oracle" and "followed" in a["flags"] for row in it["rows"]
                       if row["control"] == "mirror_lr" for a in row["answers"]) for it in data["items"])
    with Browser(binary, width=1400, height=1100) as browser:
        browser.open(path.as_uri() + "#items")
        assert browser.evaluate("document.getElementById('tab-items').style.display") == ""
        assert browser.evaluate("document.getElementById('item-count').dataset.count") == str(n)
        assert browser.evaluate("document.querySelectorAll('.item-card').length") == min(n, 10)
        # every slice image of the page has loaded
        sizes = browser.evaluate("Promise.all(Array.from(document.querySelectorAll('img.slice')).map(i => "
                                 "i.decode().then(() => i.naturalWidth, () => 0)))")
        assert sizes and min(sizes) > 0
        shot = browser.screenshot(tmp_path / "items.png")
        browser.evaluate(f"(s => {{ s.value = {json.dumps(category)}; s.dispatchEvent(new Event('change')); }})"
                         "(document.getElementById('f-category'))")
        assert browser.evaluate("document.getElementById('item-count').dataset.count") == str(n_category) != str(n)
        browser.evaluate("['f-category', 'f-model', 'f-control', 'f-outcome'].forEach((id, k) => { const s = "
                         "document.getElementById(id); s.value = ['', 'oracle', 'mirror_lr', 'followed'][k]; "
                         "s.dispatchEvent(new Event('change')); })")
        assert browser.evaluate("document.getElementById('item-count').dataset.count") == str(followed)
        browser.evaluate("document.getElementById('more').click()")
        browser.open(path.as_uri() + "#figures")
        figure_sizes = browser.evaluate("Array.from(document.querySelectorAll('img.figure')).map(i => i.naturalWidth)")
        assert len(figure_sizes) == 2 and min(figure_sizes) > 0
        assert browser.errors == [], browser.errors
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000


def test_cli_report_writes_the_page_unless_told_not_to(study, tmp_path):
    result = CliRunner().invoke(main, ["report", *map(str, study.runs), "--out", str(tmp_path / "a"), "--no-figures",
                                       "--browser-items", "0", "--n-perm", "50"])
    assert result.exit_code == 0, result.output
    assert len(_page_data(tmp_path / "a" / "report.html")["items"]) == len(study.items)
    result = CliRunner().invoke(main, ["report", *map(str, study.runs), "--out", str(tmp_path / "b"), "--no-figures",
                                       "--no-html", "--n-perm", "50"])
    assert result.exit_code == 0 and not (tmp_path / "b" / "report.html").exists()


def test_items_file_is_found_from_where_the_run_was_started(study, tmp_path, monkeypatch):
    """A run records its items path relative to the folder it was started in; the page finds it from elsewhere."""
    from volprobe.probes.models.base import load_model
    from volprobe.probes.run.engine import run

    work = tmp_path / "work"
    shutil.copytree(study.root / "items", work / "items")
    shutil.copytree(study.root / "phantoms", work / "phantoms")
    monkeypatch.chdir(work)
    items = read_items("items/items.jsonl")[:6]
    run(items, load_model("random"), [get_control("full")], "runs/random", items_path="items/items.jsonl",
        progress=False)
    manifest = json.loads((work / "runs" / "random" / "manifest.json").read_text())
    assert manifest["inputs"][0]["path"] == "items/items.jsonl"
    monkeypatch.chdir(tmp_path)
    index = load_items([work / "runs" / "random"])
    assert not index.notes and items[0].id in index.items
    (work / "items" / "items.jsonl").rename(work / "items" / "moved.jsonl")
    index = load_items([work / "runs" / "random"])
    assert not index.items and "not found (give it with --items)" in index.notes[0]
    assert items[0].id in load_items([work / "runs" / "random"], [work / "items" / "moved.jsonl"]).items
    data = build_browser([work / "runs" / "random"])  # no items file: answers without images, said so
    assert data.items and not data.thumbnails and any("not found" in n for n in data.notes)


# -- probe figure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", ["double", "single"])
def test_item_figure_fits_its_width_at_one_font_size(study, width):
    item = next(i for i in study.items if "si" in i.evidence["axes"] and i.counterfactual.get("flip_si"))
    ev = load_item_evidence(item.id, study.runs)
    fig = draw_item_figure(ev, width)
    assert not texts_outside(fig), texts_outside(fig)
    assert not overlapping_texts(fig), overlapping_texts(fig)
    assert len(font_sizes(fig)) == 1
    assert fig.get_figwidth() == {"double": 7.2, "single": 3.5}[width]
    images = [ax for ax in fig.axes if ax.images]
    # axial and coronal under the 8 controls that show an image, but one axial slice under single_slice
    assert len(images) == 2 * (len(CONTROLS) - 1) - 1


def test_probe_figure_cli(study, tmp_path):
    item = study.items[0]
    out = tmp_path / "fig" / "item.pdf"
    args = ["figure", item.id, "--runs", str(study.runs[0]), "--runs", str(study.runs[1]), "--out", str(out),
            "--control", "full", "--control", "mirror_lr", "--width", "single"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert not pdf_problems(out) and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    result = CliRunner().invoke(main, ["figure", "no/such/item", "--runs", str(study.runs[0]), "--out", str(out)])
    assert result.exit_code == 2 and result.output.startswith("error: item 'no/such/item' is in no record")
    result = CliRunner().invoke(main, args[:6] + ["--out", str(out), "--control", "nope"])
    assert result.exit_code == 2 and "control(s) nope not in the records" in result.output
    result = CliRunner().invoke(main, args[:6] + ["--out", str(tmp_path / "item.png")])
    assert result.exit_code == 2 and "give a .pdf path" in result.output


def test_report_html_lists_model_errors_as_report_md_does(tmp_path):
    """Records that ended in an error: report.html has the "Model errors" table (counts per model and control
    and the first records, their messages included), as report.md has."""
    from volprobe.stats.synthetic import SyntheticControl, SyntheticModel, synthetic_items, write_synthetic_runs

    controls = [SyntheticControl("full", reference=True), SyntheticControl("blank", removes_image=True)]
    (run,) = write_synthetic_runs(tmp_path / "runs", [SyntheticModel("flaky", error_rate=0.1)],
                                  synthetic_items(200, 10, seed=3), controls)
    errors = [json.loads(line) for f in run.glob("records*.jsonl") for line in f.read_text().splitlines()]
    errors = [r for r in errors if r.get("error")]
    assert errors
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "<summary>Model errors</summary>" in page and f"{len(errors):,} records ended in an error" in page
    assert errors[0]["item_id"] in page and "## Model errors" in (tmp_path / "report" / "report.md").read_text()
