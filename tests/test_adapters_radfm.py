"""``radfm`` end to end on a tiny stand-in "source checkout" (RadFM's module path, class and generate signature)."""

from __future__ import annotations

import shutil

import pytest
import torch
from tinymodels import cached_build, record_calls
from tinymodels.radfm import build_radfm
from tinymodels.volumes import single_axial_slice, stored

from volprobe.errors import WeightsMissingError
from volprobe.items import Item
from volprobe.probes.models import load_model

ITEM = Item(id="r", question="Which structure is more left?", answer="liver", options=["liver", "spleen"])
OTHER = Item(id="s", question="Is the heart superior to the urinary bladder?", answer="yes", answer_type="yes_no",
             options=["yes", "no"])


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    return cached_build(tmp_path_factory, "radfm", build_radfm)


def loaded(folder, **options):
    adapter = load_model(f"radfm:{folder}", device="cpu", dtype="fp32", max_new_tokens=4,
                         **{"image_size": 64, **options})
    adapter.load()
    return adapter


@pytest.fixture(scope="module")
def radfm(checkout):
    return loaded(checkout)


@pytest.fixture(scope="module")
def volume():
    return stored("LPS")


def run(adapter, batch):
    """Generate, recording the token ids and vision_x the embedding layer received."""
    with record_calls(adapter.model.embedding_layer) as emb:
        texts = [g.text for g in adapter.generate(batch)]
    return texts, [(args[0], args[1]) for args, _ in emb.calls]


def test_full_input_image_tokens_then_question_and_grey_volume_in_3_channels(radfm, volume):
    prepared = radfm.prepare(volume)
    assert prepared.info["shape"] == [1, 1, 3, 64, 64, 12]
    _, calls = run(radfm, [(prepared, ITEM)])
    ids, vision_x = calls[0]
    assert vision_x.shape == (1, 1, 3, 64, 64, 12)  # B, S, C, H, W, D
    assert torch.equal(vision_x[:, :, 0], vision_x[:, :, 2]) and float(vision_x.min()) >= 0.0
    assert float(vision_x.max()) == pytest.approx(1.0)
    vocab = radfm.model.embedding_layer.weight.shape[0]
    row = ids[0].tolist()
    assert row[:35] == [1, vocab] + [vocab + 2 + k for k in range(32)] + [vocab + 1]  # BOS <image> <image0..31> </image>
    assert radfm.tokenizer.decode(row[35:]) == radfm.prompt(ITEM)


def test_text_only_is_radfm_zero_vision_without_image_tokens(radfm):
    prepared = radfm.prepare(None)
    assert prepared.no_image and "zero" in prepared.info["no_image_mode"]
    _, calls = run(radfm, [(prepared, ITEM)])
    ids, vision_x = calls[0]
    vocab = radfm.model.embedding_layer.weight.shape[0]
    assert max(ids[0].tolist()) < vocab  # no <image> tokens at all
    assert vision_x.shape == (1, 1, 3, 64, 64, 4) and float(vision_x.abs().max()) == 0.0


def test_default_image_size_is_512_and_single_slice_becomes_depth_4(checkout, volume):
    adapter = load_model(f"radfm:{checkout}")
    assert adapter.image_size == 512 and adapter.max_new_tokens == 200
    prepared = adapter.prepare(single_axial_slice(volume))
    assert tuple(prepared.data.shape) == (1, 512, 512, 4) and prepared.info["replicated_depth"]
    assert torch.equal(prepared.data[..., 0], prepared.data[..., 3])


def test_batches_group_by_length_and_depth_padded_agrees(checkout, radfm, volume):
    full, none = radfm.prepare(volume), radfm.prepare(None)
    batch = [(full, ITEM), (none, OTHER), (full, ITEM), (full, OTHER)]
    texts, calls = run(radfm, batch)
    assert sorted(c[0].shape[0] for c in calls) == [1, 1, 2]
    assert texts == [g.text for g in radfm.generate(batch)]  # greedy: the same twice
    padded_texts, padded_calls = run(loaded(checkout, batching="padded"), batch)
    assert padded_texts == texts and len(padded_calls) == 2  # one call with images, one without
    assert radfm.prepare(stored("RAS")).input_hash == full.input_hash


def test_missing_pieces_are_named(checkout, tmp_path):
    partial = tmp_path / "RadFM"
    shutil.copytree(checkout, partial, ignore=shutil.ignore_patterns("pytorch_model.bin"))
    with pytest.raises(WeightsMissingError, match="pytorch_model.bin"):
        loaded(partial)
    shutil.copy(checkout / "pytorch_model.bin", partial / "pytorch_model.bin")
    shutil.rmtree(partial / "MedKEBERT")
    with pytest.raises(WeightsMissingError, match="Med-KEBERT"):
        loaded(partial)
