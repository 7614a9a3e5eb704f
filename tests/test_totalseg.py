"""TotalSegmentator runner: weights check, offline guards, cache, and the real call with a stand-in model."""

from __future__ import annotations

import json
import socket
import time

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from volprobe.cli import main as cli
from volprobe.errors import VolprobeError, WeightsMissingError
from volprobe.segmentation.totalseg import runner as totalseg
from volprobe.segmentation.masks import load_masks
from volprobe.segmentation.totalseg.child import network_blocked, totalsegmentator_offline, write_private_config
from volprobe.segmentation.totalseg.runner import (
    SegmentSettings, cache_key, locate_weights, required_weights, run_totalsegmentator, unique_output_names,
)
from volprobe.segmentation.volume import Volume, load_volume, save_nifti

FAST = "Dataset297_TotalSegmentator_total_3mm_1559subj"
CROP = "Dataset298_TotalSegmentator_total_6mm_1559subj"
PARTS = ["Dataset291_TotalSegmentator_part1_organs_1559subj", "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
         "Dataset293_TotalSegmentator_part3_cardiac_1559subj", "Dataset294_TotalSegmentator_part4_muscles_1559subj",
         "Dataset295_TotalSegmentator_part5_ribs_1559subj"]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No TotalSegmentator settings from the machine; an empty home; a private cache."""
    for var in ("TOTALSEG_WEIGHTS_PATH", "TOTALSEG_HOME_DIR", "VOLPROBE_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VOLPROBE_CACHE_DIR", str(tmp_path / "cache"))


def _touch_checkpoints(root, folders):
    for w in required_weights(fast=True) + required_weights(fast=False) + required_weights(True, ["liver"]):
        if w.folder in folders:
            w.checkpoint(root).parent.mkdir(parents=True, exist_ok=True)
            w.checkpoint(root).write_bytes(b"weights")
    return root


def test_required_weight_folders():
    assert [(w.task_id, w.folder, w.trainer) for w in required_weights(fast=True)] == [
        (297, FAST, "nnUNetTrainer_4000epochs_NoMirroring")]
    assert [w.folder for w in required_weights(fast=False)] == PARTS
    assert {w.trainer for w in required_weights(fast=False)} == {"nnUNetTrainerNoMirroring"}
    assert [w.folder for w in required_weights(True, ["liver"])] == [FAST, CROP]
    # the 1.5 mm model runs only the parts holding the requested structures, plus the crop model
    assert [w.folder for w in required_weights(False, ["liver"])] == [PARTS[0], CROP]
    assert [w.folder for w in required_weights(False, ["rib_left_3", "liver"])] == [PARTS[0], PARTS[4], CROP]


def test_missing_weights_fail_fast_without_network(monkeypatch, tmp_path):
    attempts = []

    def no_net(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.setattr(socket, "getaddrinfo", no_net)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "env_weights"))
    (tmp_path / "env_weights").mkdir()
    started = time.perf_counter()
    with pytest.raises(WeightsMissingError) as err:  # the CT does not even exist: weights are checked first
        run_totalsegmentator(tmp_path / "missing_ct.nii.gz", tmp_path / "out", fast=True,
                             weights_dir=tmp_path / "mine")
    assert time.perf_counter() - started < 10  # generous bound on the error path; it takes milliseconds
    msg = str(err.value)
    assert FAST in msg and "checkpoint_final.pth" in msg
    assert f"{tmp_path / 'mine'}: no such folder" in msg
    assert f"$TOTALSEG_WEIGHTS_PATH = {tmp_path / 'env_weights'}: {FAST} is missing" in msg
    assert str(tmp_path / "home" / ".totalsegmentator" / "nnunet" / "results") in msg
    assert "totalseg_download_weights -t total_fast" in msg and "TOTALSEG_HOME_DIR" in msg
    assert "probe relations CT --masks" in msg
    assert not attempts
    assert not (tmp_path / "out").exists()
    with pytest.raises(WeightsMissingError, match=r"(?s)1\.5 mm.*Dataset295.*-t total`"):
        run_totalsegmentator(tmp_path / "missing_ct.nii.gz", tmp_path / "out")


def test_incomplete_weight_folder(monkeypatch, tmp_path):
    home = tmp_path / "tshome"
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    (home / "nnunet" / "results" / FAST).mkdir(parents=True)
    with pytest.raises(WeightsMissingError, match=f"TOTALSEG_HOME_DIR/nnunet/results = .*: {FAST} is incomplete"):
        locate_weights(required_weights(fast=True))


def test_weights_location_order(monkeypatch, tmp_path):
    need = required_weights(fast=True)
    default = _touch_checkpoints(tmp_path / "home" / ".totalsegmentator" / "nnunet" / "results", [FAST])
    assert locate_weights(need) == default
    home = tmp_path / "tshome"
    _touch_checkpoints(home / "nnunet" / "results", [FAST])
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    assert locate_weights(need) == home / "nnunet" / "results"
    env = _touch_checkpoints(tmp_path / "env", [FAST])
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(env))
    assert locate_weights(need) == env
    mine = _touch_checkpoints(tmp_path / "mine", [FAST])
    assert locate_weights(need, mine) == mine
    # a place lacking one of several folders is skipped for one that has them all
    partial = _touch_checkpoints(tmp_path / "partial", [FAST])
    both = _touch_checkpoints(tmp_path / "both", [FAST, CROP])
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(both))
    assert locate_weights(required_weights(True, ["liver"]), partial) == both


def test_bad_settings(tmp_path):
    with pytest.raises(VolprobeError, match="device 'gpu' not understood"):
        SegmentSettings(device="gpu")
    with pytest.raises(VolprobeError, match="'livr' .did you mean liver"):
        SegmentSettings(roi_subset=("livr", "spleen"))
    assert SegmentSettings(device="cuda:1").totalseg_device == "gpu:1"
    assert SegmentSettings(roi_subset=("spleen", "liver", "spleen")).roi_subset == ("liver", "spleen")


def test_cuda_without_gpu_is_an_error_not_a_silent_cpu_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _touch_checkpoints(tmp_path / "w", [FAST])
    with pytest.raises(VolprobeError, match="sees no CUDA GPU"):
        run_totalsegmentator(tmp_path / "ct.nii.gz", tmp_path / "out", fast=True, device="cuda",
                             weights_dir=tmp_path / "w")


def test_network_blocked_refuses_at_once_and_restores():
    import requests

    original = socket.getaddrinfo
    with network_blocked():
        started = time.perf_counter()
        with pytest.raises(OSError, match="volprobe blocks network access"):
            socket.create_connection(("stats.totalsegmentator.com", 443), timeout=30)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post("https://stats.totalsegmentator.com:443/log_totalseg_run", json={}, timeout=30)
        assert time.perf_counter() - started < 5
        a, b = socket.socketpair()  # local IPC (nnU-Net's worker pipes) still works
        a.sendall(b"ok")
        assert b.recv(2) == b"ok"
        a.close(), b.close()
    assert socket.getaddrinfo is original


def test_totalsegmentator_download_and_stats_are_replaced(tmp_path):
    from totalsegmentator import config as ts_config
    from totalsegmentator import libs, python_api

    original = python_api.download_pretrained_weights
    (tmp_path / FAST).mkdir()
    with network_blocked(), totalsegmentator_offline(tmp_path):
        assert python_api.download_pretrained_weights(297) is None  # present: nothing to do
        with pytest.raises(WeightsMissingError, match=f"{CROP}.*never downloads"):
            python_api.download_pretrained_weights(298)
        with pytest.raises(WeightsMissingError):
            libs.download_pretrained_weights(291)
        params = {"task": "total", "fast": True, "preview": False, "multilabel": True, "roi_subset": None,
                  "statistics": False, "radiomics": False}
        assert python_api.send_usage_stats({"send_usage_stats": True, "totalseg_id": "x",
                                            "prediction_counter": 1}, params) is None
        assert ts_config.send_usage_stats_application("x") is None
    assert python_api.download_pretrained_weights is original


def test_private_config_turns_stats_off(monkeypatch, tmp_path):
    from totalsegmentator.config import get_config

    home = tmp_path / "tshome"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"totalseg_id": "abc", "send_usage_stats": True,
                                                  "prediction_counter": 7, "license_number": "L"}))
    write_private_config(home)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    config = get_config()  # TotalSegmentator's own reader
    assert config["send_usage_stats"] is False and config["license_number"] == "L" and config["prediction_counter"] == 7
    write_private_config(tmp_path / "fresh")
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["send_usage_stats"] is False


def test_cache_key_depends_on_content_settings_and_weights_not_device():
    base = cache_key("h1", SegmentSettings(fast=True), "w1")
    assert base == cache_key("h1", SegmentSettings(fast=True, device="cuda"), "w1")
    others = {cache_key("h2", SegmentSettings(fast=True), "w1"), cache_key("h1", SegmentSettings(), "w1"),
              cache_key("h1", SegmentSettings(True, roi_subset=("liver",)), "w1"),
              cache_key("h1", SegmentSettings(fast=True), "w2")}
    assert base not in others and len(others) == 4


def test_unique_output_names(tmp_path):
    names = unique_output_names([tmp_path / "a" / "ct.nii.gz", tmp_path / "b" / "ct.nii.gz", tmp_path / "x.mha",
                                 tmp_path / "dicom_series", tmp_path / "a" / "ct.nii"])
    assert names == ["a_ct", "b_ct", "x", "dicom_series", "a_ct_2"]


# -- the real totalsegmentator() call with a stand-in model ----------------------------------

@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    from volprobe.segmentation.totalseg.standin import write_standin_weights

    root = tmp_path_factory.mktemp("weights")
    write_standin_weights(root, [(200.0, 1e9, "vertebrae_L1"), (-50.0, 200.0, "liver")])
    return root, tmp_path_factory.mktemp("segcache")


@pytest.fixture
def count_runs(monkeypatch):
    calls = []
    real = totalseg._run_job

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(totalseg, "_run_job", counted)
    return calls


def assert_standin_labels(out, ct: Volume) -> None:
    """Labels on the CT's grid, exactly where the stand-in's HU rules put them."""
    lm = load_masks(out, reference=ct)  # raises if not on the CT's grid
    img = nib.load(str(out))
    assert img.shape == ct.shape and np.allclose(img.affine, ct.affine, atol=1e-4)
    hu = ct.array
    assert set(lm.present().values()) == {"liver", "vertebrae_L1"}
    bone, soft = hu >= 200, (hu >= -50) & (hu < 200)
    assert bone.sum() > 1000 and soft.sum() > 10000
    np.testing.assert_array_equal(lm.mask("vertebrae_L1"), bone)
    np.testing.assert_array_equal(lm.mask("liver"), soft)


@pytest.mark.slow
def test_real_totalsegmentator_call_with_standin_model(standin, count_runs, tmp_path, totalseg_fixture):
    weights, cache = standin
    ct_path = totalseg_fixture[0]
    out = run_totalsegmentator(ct_path, tmp_path / "out", fast=True, device="cpu", weights_dir=weights,
                               cache_dir=cache)
    assert out == tmp_path / "out" / "example_ct_sm.nii.gz" and len(count_runs) == 1
    ct = load_volume(ct_path)
    assert_standin_labels(out, ct)
    manifest = json.loads((tmp_path / "out" / "example_ct_sm.nii.gz.manifest.json").read_text())
    assert manifest["cache"]["hit"] is False and manifest["input_hashes"]["ct_content_sha256"] == ct.content_hash
    assert manifest["parameters"]["fast"] is True and manifest["structures"] == ["liver", "vertebrae_L1"]
    # TotalSegmentator read and updated the private config: statistics off
    config = json.loads((cache / "totalseg_home" / "config.json").read_text())
    assert config["send_usage_stats"] is False and config["prediction_counter"] == 1
    assert not (tmp_path / "home" / ".totalsegmentator").exists()

    again = run_totalsegmentator(ct, tmp_path / "again", fast=True, weights_dir=weights, cache_dir=cache,
                                 name="same")
    assert len(count_runs) == 1, "second call must come from the cache"
    assert again.read_bytes() == out.read_bytes()
    assert json.loads((tmp_path / "again" / "same.nii.gz.manifest.json").read_text())["cache"]["hit"] is True


@pytest.mark.slow
def test_probe_segment_cli_several_cts(standin, count_runs, tmp_path, totalseg_fixture):
    """Two CTs: the fixture (cached by the test above when run together) and the same anatomy stored LPS."""
    weights, cache = standin
    ct = load_volume(totalseg_fixture[0])
    lps_affine = ct.affine @ np.array([[-1, 0, 0, ct.shape[0] - 1], [0, -1, 0, ct.shape[1] - 1],
                                       [0, 0, 1, 0], [0, 0, 0, 1]], float)
    lps = Volume(ct.array[::-1, ::-1, :].copy(), lps_affine)
    assert lps.axcodes == ("L", "P", "S")
    lps_path = save_nifti(lps, tmp_path / "lps" / "ct_lps.nii.gz")
    result = CliRunner().invoke(cli, ["segment", str(totalseg_fixture[0]), str(tmp_path / "gone.nii.gz"),
                                      str(lps_path), "--out", str(tmp_path / "masks"), "--fast",
                                      "--weights-dir", str(weights), "--cache-dir", str(cache)])
    assert result.exit_code == 2, result.output  # one CT is missing: reported, the others written
    assert "FAILED" in result.output and "gone.nii.gz" in result.output and "1 of 3 CTs failed" in result.output
    assert "ct_lps.nii.gz (2 structures)" in result.output
    assert 1 <= len(count_runs) <= 2  # the LPS CT always runs; the fixture may be cached already
    assert_standin_labels(tmp_path / "masks" / "ct_lps.nii.gz", load_volume(lps_path))
    assert_standin_labels(tmp_path / "masks" / "example_ct_sm.nii.gz", ct)
    for name in ("ct_lps", "example_ct_sm"):
        assert (tmp_path / "masks" / f"{name}.nii.gz.manifest.json").is_file()


def test_probe_segment_cli_reports_missing_weights(tmp_path):
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "o"),
                                      "--fast", "--weights-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "totalseg_download_weights -t total_fast" in result.output


@pytest.mark.slow
def test_failing_totalsegmentator_run_is_reported_and_not_cached(tmp_path, count_runs, totalseg_fixture):
    from volprobe.segmentation.totalseg.standin import write_standin_weights

    model = write_standin_weights(tmp_path / "broken")
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "no_such_module.Net"
    (model / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(totalseg.TotalSegmentatorError, match=r"(?s)failed \(exit status 1\).*ImportError: Network class could not be found.*Full log"):
        run_totalsegmentator(totalseg_fixture[0], tmp_path / "out", fast=True, weights_dir=tmp_path / "broken",
                             cache_dir=tmp_path / "cache")
    assert len(count_runs) == 1
    # nothing cached (a later call tries again) and nothing written as if it had worked
    assert not list((tmp_path / "cache").glob("*.nii.gz")) and not (tmp_path / "out").exists()
