"""Weight resolution (local folder, Hugging Face cache, offline) and device/dtype handling."""

from __future__ import annotations

import pytest
import torch

from volprobe.errors import VolprobeError, WeightsMissingError
from volprobe.probes.models import load_model
from volprobe.probes.models.weights import (folder_fingerprint, hub_cache_dirs, resolve_device, resolve_dtype,
                                            resolve_weights)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty HF_HOME and HF_HUB_CACHE, and a home without a cache."""
    hub, home = tmp_path / "hubcache", tmp_path / "hfhome"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return hub, home / "hub", tmp_path / "home" / ".cache" / "huggingface" / "hub"


def fake_snapshot(cache, repo_id: str, commit: str = "abc123", files=("config.json",)):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files:
        (snap / f).write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_cache_dirs_follow_environment(caches):
    assert hub_cache_dirs() == list(caches)


def test_missing_model_lists_every_place_looked(caches, tmp_path):
    with pytest.raises(WeightsMissingError) as err:
        resolve_weights(str(tmp_path / "nowhere"), model="m3d", default_repo="GoodBaiBai88/M3D-LaMed-Phi-3-4B")
    assert str(tmp_path / "nowhere") in str(err.value) and "no such folder" in str(err.value)
    with pytest.raises(WeightsMissingError) as err:
        resolve_weights(None, model="m3d", default_repo="GoodBaiBai88/M3D-LaMed-Phi-3-4B")
    message = str(err.value)
    for cache in caches:
        assert str(cache / "models--GoodBaiBai88--M3D-LaMed-Phi-3-4B") in message
    assert "huggingface-cli download GoodBaiBai88/M3D-LaMed-Phi-3-4B" in message


def test_hub_id_path_also_searches_the_caches(caches):
    with pytest.raises(WeightsMissingError) as err:
        resolve_weights("org/some-vlm", model="hf")
    assert "org/some-vlm" in str(err.value) and str(caches[1] / "models--org--some-vlm") in str(err.value)


def test_cached_snapshot_found_offline_with_its_commit(caches):
    snap = fake_snapshot(caches[1], "google/medgemma-1.5-4b-it", commit="deadbeef")
    found = resolve_weights("google/medgemma-1.5-4b-it", model="hf")
    assert found.path == snap and found.source == "hf-cache" and found.revision == "deadbeef"
    default = resolve_weights(None, model="hf", default_repo="google/medgemma-1.5-4b-it")
    assert default.path == snap


def test_incomplete_folder_names_what_is_missing(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(WeightsMissingError, match="lacks config.json"):
        resolve_weights(str(tmp_path / "model"), model="hf")


def test_local_fingerprint_changes_with_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    first = resolve_weights(str(tmp_path), model="hf")
    assert first.source == "local" and first.revision.startswith("sha256:")
    (tmp_path / "model.safetensors").write_bytes(b"y" * 100)
    assert folder_fingerprint(tmp_path) != first.revision


@pytest.mark.parametrize("spec", ["hf", "m3d", "med3dvlm", "radfm"])
def test_every_adapter_reports_missing_weights(spec, caches, tmp_path):
    adapter = load_model(f"{spec}:{tmp_path / 'absent'}", device="cpu", dtype="fp32")
    with pytest.raises(WeightsMissingError, match="absent"):
        adapter.load()


def test_dtype_and_device_resolution():
    cpu = resolve_device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16 and resolve_dtype("fp16", cpu) == torch.float16
    assert resolve_dtype("torch.float32", cpu) == torch.float32
    with pytest.raises(VolprobeError, match="unknown dtype"):
        resolve_dtype("int8", cpu)
    with pytest.raises(VolprobeError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        for dev in ("cuda", "cuda:1"):
            with pytest.raises(VolprobeError, match="CUDA is not available"):
                resolve_device(dev)
    else:  # pragma: no cover - only on GPU machines
        assert resolve_dtype("auto", resolve_device("cuda:0")) in (torch.bfloat16, torch.float16)
        with pytest.raises(VolprobeError, match="visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_adapter_modules_import_no_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys; import volprobe.probes.models.hf, volprobe.probes.models.m3d, volprobe.probes.models.med3dvlm, "
            "volprobe.probes.models.radfm, volprobe.probes.models.preprocessing; "
            "print(sorted(m for m in ('torch', 'transformers', 'monai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_options_are_checked():
    from volprobe.errors import InvalidValueError

    for spec in ("hf", "m3d", "med3dvlm", "radfm", "random", "oracle", "prior:x.json"):
        with pytest.raises(InvalidValueError, match="unknown model option.*slicez"):
            load_model(spec, slicez=3)
    assert load_model("random", seed=3).seed == 3
    with pytest.raises(VolprobeError, match="max_new_tokens"):
        load_model("m3d", max_new_tokens="many")
    with pytest.raises(VolprobeError, match="text_only_mode"):
        load_model("med3dvlm", text_only_mode="blank")
    with pytest.raises(VolprobeError, match="window"):
        load_model("radfm", window="100,-100")
    assert load_model("radfm", window="-1000,1000").preset.window == (-1000.0, 1000.0)
    with pytest.raises(VolprobeError, match="slices"):
        load_model("hf", slices="many")
    with pytest.raises(VolprobeError, match="question"):
        load_model("hf", question="no placeholder")
