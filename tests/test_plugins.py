"""Plugins through entry points: a package that declares a model and controls in the ``volprobe.models`` /
``volprobe.controls`` groups adds them to every command, with no edit to volprobe. The plugin's control
that removes the image is the verdict's "without the volume", and its counterfactual is tested for
tracking, because reports read what a control does from the control's own facts."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.controls import CONTROLS
from volprobe.items import Item, write_items
from volprobe.probes.baselines import BASELINES
from volprobe.probes.models import MODELS

PLUGIN = "volprobe_test_plugin"
SOURCE = '''
"""A third-party package adding a model and two controls to volprobe."""
import numpy as np

from volprobe.controls import Control
from volprobe.controls.builtin import AxisFlip
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared


class FirstOption(ModelAdapter):
    """Answers the first option of every item (a plugin reference model)."""

    name = "first_option"
    uses_image = False
    no_image_mode = "never reads an image"

    def prepare(self, volume):
        return Prepared(data=None, input_hash="none", no_image=True)

    def generate(self, batch):
        return [Generation(item.as_output(item.options[0])) for _, item in batch]


class Fog(Control):
    """Every voxel set to water: an image with no anatomy (the plugin's own no-image condition)."""

    name = "fog"
    statement = "replaces every voxel with water (0 HU): an image without anatomy"
    removes_image = True

    def apply(self, volume, item, ctx):
        return self.output(item, volume.with_array(np.zeros(volume.shape, dtype=np.int16)))


class MirrorAgain(AxisFlip):
    """A second left-right mirror, registered under another name (the plugin's counterfactual)."""

    name = "mirror_again"
    patient_axis = "lr"
    renames_sides = True
    statement = "mirrors voxel data left-right (a plugin's counterfactual)"


class Turn(Control):
    """Half a turn about the superior-inferior axis, written from scratch: a geometric control that is not a
    flip of one axis (so its pair geometry is measured again) and renames sides."""

    name = "turn"
    statement = "turns the voxel data half a turn about the superior-inferior axis: left/right and front/back swap"
    changes_gold = True
    changes_geometry = True

    @staticmethod
    def axes(affine):
        from volprobe.segmentation.volume import array_axis_for

        return array_axis_for(affine, "lr"), array_axis_for(affine, "ap")

    def apply(self, volume, item, ctx):
        axes = self.axes(volume.affine)
        return self.output(item, volume.with_array(np.flip(volume.array, axes).copy()), axes=list(axes))

    def transform_labels(self, labels):
        from volprobe.segmentation.masks import LabelMap
        from volprobe.segmentation.names import mirror_name

        return LabelMap(np.flip(labels.labels, self.axes(labels.affine)).copy(), labels.affine,
                        {i: mirror_name(n) for i, n in labels.names.items()})
'''
ENTRY_POINTS = f"""
[volprobe.models]
first_option = {PLUGIN}:FirstOption

[volprobe.controls]
fog = {PLUGIN}:Fog
mirror_again = {PLUGIN}:MirrorAgain
turn = {PLUGIN}:Turn
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin installed as pip would leave it: its module and a ``.dist-info`` with entry points."""
    root = tmp_path_factory.mktemp("site")
    (root / f"{PLUGIN}.py").write_text(textwrap.dedent(SOURCE))
    info = root / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    sys.path.insert(0, str(root))
    registries = (MODELS, CONTROLS, BASELINES)
    for r in registries:
        r._entry_points = None  # read the installed distributions again
    yield root
    sys.path.remove(str(root))
    sys.modules.pop(PLUGIN, None)
    for r, names in ((MODELS, ["first_option"]), (CONTROLS, ["fog", "mirror_again", "turn"])):
        for n in names:
            r.unregister(n)
        r._entry_points = None


def _probe(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_plugin_model_and_controls_are_listed(plugin):
    assert "first_option" in _probe("models")
    listed = _probe("controls")
    assert "fog " in listed and "[no image;" in listed
    assert "mirror_again" in listed and "counterfactual (lr)" in listed


def test_unknown_names_list_the_plugins_too(plugin, tmp_path):
    items = tmp_path / "items.jsonl"
    write_items([Item(id="q1", question="Left or right?", answer="left", options=["left", "right"])], items)
    for option, name, plugin_name in (("--model", "nope", "first_option"), ("--control", "nope", "mirror_again")):
        args = {"--model": "random", "--control": "full", option: name}
        result = CliRunner().invoke(main, ["run", "--items", str(items), "--out", str(tmp_path / "r"),
                                           *[x for kv in args.items() for x in kv]])
        assert result.exit_code == 2 and plugin_name in result.output and "\n" == result.output[-1:]


@pytest.fixture(scope="module")
def study(plugin, tmp_path_factory):
    """Phantoms, a question set (made with the plugin installed), and runs under the plugin's controls."""
    root = tmp_path_factory.mktemp("study")
    # 8 patients: the fewest for which a report uses its cluster-robust t test (fewer cannot reach significance)
    _probe("phantom", "--out", root / "ph", "--n", 8, "--orientation", "mixed", "--seed", 4)
    _probe("questions", root / "ph", "--masks-suffix", "_seg.nii.gz", "--out", root / "items.jsonl",
           "--per-case", 40, "--exclude", "vertebrae_*", "--no-progress")
    for model in ("oracle", "first_option"):
        _probe("run", "--model", model, "--items", root / "items.jsonl", "--control", "full", "--control", "fog",
               "--control", "mirror_again", "--out", root / "runs" / model, "--no-progress")
    _probe("report", root / "runs" / "oracle", root / "runs" / "first_option", "--out", root / "report",
           "--no-figures")
    return root


def test_items_carry_golds_for_the_plugin_counterfactual(study):
    items = [json.loads(line) for line in (study / "items.jsonl").open()]
    assert all("mirror_again" in it["counterfactual"] and "turn" in it["counterfactual"] for it in items)
    assert all(it["counterfactual"]["mirror_again"] == it["counterfactual"]["mirror_lr"] for it in items)
    assert all(it["metadata"]["control_params"]["turn"]["axes"] == [0, 1] for it in items)  # mixed: no 45° tilts


def test_plugin_geometric_control_golds_follow_its_moved_masks(study, tmp_path):
    """The gold under a plugin's own geometric control is the relation on the masks it moves, as
    `probe controls apply --labels` writes them (its pair geometry measured again: it states no isometry)."""
    from volprobe.items import read_items
    from volprobe.probes.questions import answer_from_graph
    from volprobe.segmentation.masks import load_masks
    from volprobe.segmentation.relations.graph import build_relation_graph
    from volprobe.segmentation.volume import load_volume

    items = read_items(study / "items.jsonl")
    cases = sorted({it.case for it in items})[:2]
    changed = checked = 0
    for case in cases:
        out = tmp_path / f"{case}_turn.nii.gz"
        _probe("controls", "apply", study / "ph" / f"{case}.nii.gz", "--control", "turn", "--out", out,
               "--labels", study / "ph" / f"{case}_seg.nii.gz")
        volume = load_volume(out)
        graph = build_relation_graph(load_masks(tmp_path / f"{case}_turn_seg.nii.gz", volume), volume, case=case)
        for it in (it for it in items if it.case == case):
            assert answer_from_graph(it, graph) == it.counterfactual["turn"], it.question
            checked += 1
            changed += it.counterfactual["turn"] not in (None, it.answer)
    assert checked > 50 and changed > 10


def test_plugin_controls_are_recorded_with_their_facts(study):
    first = json.loads((study / "runs" / "oracle" / "records.jsonl").open().readline())
    facts = {json.loads(line)["control"]: json.loads(line)["control_facts"]
             for line in (study / "runs" / "oracle" / "records.jsonl").open()}
    assert facts["fog"]["removes_image"] is True and facts["mirror_again"]["changes_gold"] is True
    assert facts["full"]["reference"] is True and first["model"] == "oracle"


def test_verdict_uses_the_plugin_no_image_control_and_tracking_its_counterfactual(study):
    report = json.loads((study / "report" / "report.json").read_text())
    verdicts = {v["model"]: v for v in report["verdicts"] if v["grouping"] == "all"}
    assert verdicts["oracle"]["no_image_control"] == "fog"
    assert verdicts["oracle"]["verdict"] == "uses the volume"
    assert verdicts["first_option"]["verdict"] == "no evidence of volume use"
    paired = {(r["model"], r["control"]): r for r in report["tables"]["paired"] if r["grouping"] == "all"}
    mirror = paired[("oracle", "mirror_again")]
    assert mirror["kind"] == "counterfactual" and mirror["n_changed"] > 0
    assert mirror["p_tracking_significant"] is True
    assert paired[("first_option", "mirror_again")]["p_tracking_significant"] is False
    assert paired[("oracle", "fog")]["kind"] == "no image"
