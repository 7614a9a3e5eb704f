"""``probe doctor``: model folders checked without loading weights; problems in plain words, exit status 1."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from tinymodels import cached_build
from tinymodels.hf_vlm import build_gemma3
from tinymodels.lamed import build_lamed
from tinymodels.radfm import SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG, build_radfm, write_language_files

from volprobe.cli import main
from volprobe.probes.models.doctor import doctor


def probe_doctor(*args):
    return CliRunner().invoke(main, ["doctor", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def radfm_dir(tmp_path_factory):
    return cached_build(tmp_path_factory, "radfm", build_radfm)


@pytest.fixture
def broken_radfm(radfm_dir, tmp_path):
    """RadFM as first cloned: the code and Language_files (RadFM's tokenizer config), no checkpoint, no Med-KEBERT."""
    folder = tmp_path / "RadFM"
    shutil.copytree(radfm_dir / "Model", folder / "Model")
    write_language_files(folder / "Language_files")
    return folder


def test_broken_radfm_folder_is_explained_in_plain_words(broken_radfm):
    result = probe_doctor(f"radfm:{broken_radfm}")
    out = result.output
    assert result.exit_code == 1, out
    assert (broken_radfm / "Language_files" / "tokenizer_config.json").read_text() == TOKENIZER_CONFIG
    assert (broken_radfm / "Language_files" / "special_tokens_map.json").read_text() == SPECIAL_TOKENS_MAP
    assert "PROBLEM weights: no weights: pytorch_model.bin missing" in out
    assert "download RadFM's checkpoint" in out and "unzip" in out
    assert "AutoTokenizer recurses without end" in out and "reads tokenizer.model with SentencePiece" in out
    assert "ok      tokenizer: SentencePiece, 300 pieces + 3202 image tokens; a prompt starts [1, 300, 302]" in out
    assert "PROBLEM Med-KEBERT: no Med-KEBERT config" in out and "Quick_demo/MedKEBERT" in out
    assert "2 problems found" in out and "Traceback" not in out


def test_complete_radfm_checkout_passes(radfm_dir):
    report = doctor(f"radfm:{radfm_dir}")
    assert report.ok, str(report)
    assert {c.what for c in report.checks} >= {"folder", "config", "tokenizer", "weights", "Med-KEBERT",
                                              "model code", "preset", "libraries"}
    assert any(c.what == "model code" and "builds" in c.message for c in report.checks)


def test_radfm_code_that_cannot_import_says_what_to_install(radfm_dir, tmp_path):
    folder = tmp_path / "RadFM"
    shutil.copytree(radfm_dir, folder)
    code = folder / "Model" / "RadFM" / "my_embedding_layer.py"
    code.write_text("from einops_exts_not_installed import rearrange_many\n" + code.read_text())
    report = doctor(f"radfm:{folder}")
    problem = next(c for c in report.problems if c.what == "model code")
    assert "einops_exts_not_installed" in problem.message and "volprobe[radfm]" in problem.fix


def test_m3d_folder_ok_and_broken_remote_code(tmp_path_factory, tmp_path):
    good = cached_build(tmp_path_factory, "lamed_m3d", build_lamed)
    report = doctor(f"m3d:{good}")
    assert report.ok, str(report)
    assert next(c for c in report.checks if c.what == "preset").message.startswith("m3d: HU window [-160.0, 240.0]")
    broken = tmp_path / "m3d"
    shutil.copytree(good, broken)
    modeling = broken / "lamed_modeling.py"  # remote code written for other library versions, as M3D's on MONAI 1.4+
    modeling.write_text(modeling.read_text().replace(
        "stride=tuple(config.patch_size))", "stride=tuple(config.patch_size), pos_embed='perceptron')"))
    report = doctor(f"m3d:{broken}")
    problem = next(c for c in report.problems if c.what == "model code")
    assert "TypeError" in problem.message and "transformers>=4.40,<4.46" in problem.fix


def needs_gemma3():
    import transformers

    if not hasattr(transformers, "Gemma3ForConditionalGeneration"):
        pytest.skip("Gemma 3 needs transformers >= 4.50")


def test_hf_folder_preset_by_config_and_missing_weights(tmp_path_factory, tmp_path):
    needs_gemma3()
    gemma = cached_build(tmp_path_factory, "gemma3", build_gemma3)
    report = doctor(f"hf:{gemma}")
    assert report.ok, str(report)
    preset = next(c for c in report.checks if c.what == "preset")
    assert preset.message.startswith("medgemma (config.json architecture ['Gemma3ForConditionalGeneration']")
    assert "85 slices" in preset.message and "2000 new tokens" in preset.message
    bare = tmp_path / "gemma"
    shutil.copytree(gemma, bare, ignore=shutil.ignore_patterns("*.safetensors"))
    result = probe_doctor(f"hf:{bare}")
    assert result.exit_code == 1 and "PROBLEM weights: no weight files" in result.output


def test_missing_folder_and_bad_option(tmp_path):
    result = probe_doctor(f"m3d:{tmp_path / 'absent'}")
    assert result.exit_code == 1 and "PROBLEM folder: m3d weights not found" in result.output
    result = probe_doctor("hf:x", "--model-option", "slicez=3")
    assert result.exit_code == 2 and "unknown model option" in result.output
    assert probe_doctor("random").exit_code == 0


def test_config_that_is_not_json_is_named(tmp_path_factory, tmp_path):
    needs_gemma3()
    gemma = cached_build(tmp_path_factory, "gemma3", build_gemma3)
    folder = tmp_path / "g"
    shutil.copytree(gemma, folder)
    (folder / "config.json").write_text("{not json")
    report = doctor(f"hf:{folder}")
    assert [c.what for c in report.problems] == ["config"] and "not readable JSON" in report.problems[0].message
    assert json.loads((gemma / "config.json").read_text())  # the original is untouched
