"""``m3d`` and ``med3dvlm`` end to end on tiny M3D-style models (remote code, ``trust_remote_code=True``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import cached_build, record_calls, record_method
from tinymodels.lamed import build_lamed
from tinymodels.volumes import single_axial_slice, stored

from volprobe.errors import InvalidValueError, VolprobeError
from volprobe.items import Item
from volprobe.probes.models import load_model
from volprobe.probes.models.med3dvlm import VISION_TOWER_FILE
from volprobe.probes.models.preprocessing import M3D_PRESET, m3d_volume

CHOICE = Item(id="c", question="Which structure is more left?", answer="spleen", options=["liver", "spleen", "aorta", "heart"])
OPEN = Item(id="o", question="Where is the bone block?", answer="left", answer_type="open")
RAD_YES_NO = Item(id="3drad/test/T4/Atelectasis/2", question="Does the CT scan exhibit atelectasis?", answer="No",
                  answer_type="yes_no", options=["Yes", "No"], metadata={"benchmark": "3drad"})
RAD_OPEN = Item(id="3drad/test/T1/x/2", question="Where is the largest lymph node observed?",
                answer="Right hilar region.", answer_type="open", metadata={"benchmark": "3drad"})


@pytest.fixture(scope="session")
def m3d_dir(tmp_path_factory):
    return cached_build(tmp_path_factory, "lamed_m3d", build_lamed)


@pytest.fixture(scope="session")
def med3dvlm_dir(tmp_path_factory):
    return cached_build(tmp_path_factory, "lamed_med3dvlm", lambda d: build_lamed(
        d, image_size=(128, 256, 256), patch_size=(16, 16, 16), separate_vision_tower=True, bos=False, seed=3))


def loaded(name, folder, **options):
    """The adapter as the authors' path runs it (reuse of the image prefix off: these tests read what each
    ``generate`` call receives; tests/test_reuse.py checks reuse gives the same answers)."""
    options.setdefault("reuse", False)
    adapter = load_model(f"{name}:{folder}", device="cpu", dtype=options.pop("dtype", "fp32"), max_new_tokens=4, **options)
    adapter.load()
    return adapter


@pytest.fixture(scope="module")
def m3d(m3d_dir):
    return loaded("m3d", m3d_dir)


@pytest.fixture(scope="module")
def volume():
    return stored("LPS")


def run(adapter, batch):
    """Generate, recording what reached the model: token ids given to the embedding, images given to the
    vision tower, the projector's features and the embeddings the language model read."""
    inner = adapter.model.get_model()
    with record_calls(inner.embed_tokens) as emb, record_calls(inner.vision_tower) as vis, \
            record_calls(inner.mm_projector) as proj, record_calls(inner) as lm:
        texts = [g.text for g in adapter.generate(batch)]
    return texts, {"ids": emb.calls[0][0][0], "images": [c[0][0] for c in vis.calls],
                   "features": proj.outputs, "embeds": lm.calls[0][1]["inputs_embeds"]}


def test_full_input_is_256_image_features_over_positions_1_to_256(m3d, volume):
    prepared = m3d.prepare(volume)
    assert prepared.data.shape == (1, 1, 32, 256, 256) and prepared.info["shape"] == [1, 1, 32, 256, 256]
    assert torch.equal(prepared.data, m3d_volume(volume, M3D_PRESET)[0]) and prepared.info["preset"] == "m3d"
    _, seen = run(m3d, [(prepared, CHOICE), (prepared, CHOICE)])
    images = seen["images"][0]
    assert images.shape == (2, 1, 32, 256, 256) and images.dtype == torch.float32
    # the display window's soft tissue (40 HU -> 128/255) after the crop removed the air; bone saturates
    assert float(images.min()) == pytest.approx(128 / 255, abs=1e-3) and float(images.max()) == pytest.approx(1.0)
    ids = seen["ids"]
    patch = m3d.tokenizer.convert_tokens_to_ids("<im_patch>")
    assert torch.all(ids[:, 0] == m3d.tokenizer.bos_token_id)
    assert torch.all(ids[:, 1:257] == patch) and int((ids == patch).sum()) == 2 * 256
    text = m3d.tokenizer.decode(ids[0, 257:])
    assert text == " Which structure is more left?\nChoices: A. liver B. spleen C. aorta D. heart\nAnswer:"
    features, embeds = seen["features"][0], seen["embeds"]
    assert torch.equal(embeds[:, 1:257], features)  # spliced exactly over the <im_patch> positions
    assert torch.equal(embeds[:, 257:], m3d.model.get_model().embed_tokens(ids[:, 257:]))


def test_prompt_styles():
    assert load_model("m3d").prompt(OPEN) == "Where is the bone block?\nAnswer:"
    m3d_style = load_model("m3d", prompt_style="m3d")
    assert m3d_style.prompt(CHOICE) == "Which structure is more left? Choices: A. liver B. spleen C. aorta D. heart"
    with pytest.raises(VolprobeError, match="prompt_style"):
        load_model("m3d", prompt_style="chatml")


def test_3drad_prompt_is_what_3drads_dataset_class_writes():
    """3D-RAD's RADDataset writes all four Choice columns of its CSV rows (unused ones hold '-'), for open
    questions too, then '\nAnswer:'."""
    adapter = load_model("m3d")
    assert adapter.prompt(RAD_YES_NO) == ("Does the CT scan exhibit atelectasis?\nChoices: A. Yes B. No C. - D. -"
                                          "\nAnswer:")
    assert adapter.prompt(RAD_OPEN) == ("Where is the largest lymph node observed?\nChoices: A. - B. - C. - D. -"
                                        "\nAnswer:")
    assert adapter.prompt(CHOICE).endswith("Choices: A. liver B. spleen C. aorta D. heart\nAnswer:")


def test_3drad_prompt_ids_are_bos_256_patches_space_and_the_question(m3d, volume):
    _, seen = run(m3d, [(m3d.prepare(volume), RAD_YES_NO)])
    ids = seen["ids"][0].tolist()
    question = " Does the CT scan exhibit atelectasis?\nChoices: A. Yes B. No C. - D. -\nAnswer:"
    assert ids == [m3d.tokenizer.bos_token_id] + [m3d.image_token_id] * 256 + \
        m3d.tokenizer(question, add_special_tokens=False)["input_ids"]


def test_unknown_option_is_an_error_naming_the_known_ones():
    with pytest.raises(InvalidValueError, match="windw.*window"):
        load_model("m3d", windw="-1000,1000")


def test_preprocessing_and_generation_settings_are_recorded(m3d_dir, volume):
    adapter = loaded("m3d", m3d_dir, window="-1000,1000", crop="none", resample="trilinear")
    prepared = adapter.prepare(volume)
    assert prepared.info["crop"] == "none" and prepared.info["preset"] == "m3d+crop+resample+window"
    with record_method(adapter.model) as gen:
        adapter.generate([(prepared, OPEN)])
    settings = adapter.generation_settings
    assert settings["preprocessing"]["window"] == [-1000.0, 1000.0] and settings["preprocessing"]["crop"] == "none"
    sent = gen.calls[0][1]
    for key in ("do_sample", "num_beams", "max_new_tokens", "pad_token_id"):
        assert settings[key] == sent[key]  # what ran is what is recorded
    inherited = adapter.model.generation_config.to_diff_dict()
    assert settings["eos_token_id"] == inherited["eos_token_id"] and "eos_token_id" in settings["inherited_from_generation_config"]
    assert settings["libraries"]["transformers"] and settings["prompt_style"] == "3drad"


def test_text_only_drop_tokens_reads_text_alone(m3d):
    prepared = m3d.prepare(None)
    assert prepared.no_image and prepared.info["no_image_mode"] == m3d.no_image_mode
    _, seen = run(m3d, [(prepared, OPEN)])
    assert not seen["images"]
    assert m3d.tokenizer.convert_tokens_to_ids("<im_patch>") not in seen["ids"][0].tolist()
    assert m3d.tokenizer.decode(seen["ids"][0], skip_special_tokens=True) == m3d.prompt(OPEN)
    assert "no <im_patch>" in m3d.no_image_mode


def test_text_only_placeholder_tokens_feeds_learned_embeddings(m3d_dir):
    adapter = loaded("m3d", m3d_dir, text_only_mode="placeholder_tokens")
    prepared = adapter.prepare(None)
    assert prepared.info["no_image_mode"] == adapter.no_image_mode and "images=None" in adapter.no_image_mode
    with record_method(adapter.model) as gen:
        _, seen = run(adapter, [(prepared, OPEN)])
    assert gen.calls[0][1]["images"] is None and not seen["images"]
    patch = adapter.tokenizer.convert_tokens_to_ids("<im_patch>")
    assert torch.all(seen["ids"][0, 1:257] == patch)
    table = adapter.model.get_model().embed_tokens.weight
    assert torch.equal(seen["embeds"][0, 1:257], table[patch].expand(256, -1))
    assert adapter.generation_settings["text_only_mode"] == "placeholder_tokens"


def test_exact_batches_only_equal_lengths_and_padded_agrees(m3d_dir, m3d, volume):
    full, none = m3d.prepare(volume), m3d.prepare(None)
    batch = [(full, CHOICE), (full, OPEN), (none, OPEN), (full, CHOICE)]
    with record_method(m3d.model) as gen:
        exact = [g.text for g in m3d.generate(batch)]
    shapes = sorted(tuple(kw["inputs"].shape) for _, kw in gen.calls)
    assert len(gen.calls) == 3 and (2, shapes[-1][1]) in shapes  # the two CHOICE items share one call
    assert all("attention_mask" not in kw for _, kw in gen.calls)
    padded = loaded("m3d", m3d_dir, batching="padded")
    assert [g.text for g in padded.generate(batch)] == exact
    assert [g.text for g in m3d.generate(batch)] == exact  # greedy: the same twice


def test_orientation_and_single_slice(m3d, volume):
    assert m3d.prepare(stored("RAS")).input_hash == m3d.prepare(volume).input_hash
    one = m3d.prepare(single_axial_slice(volume))
    assert one.info["replicated_depth"] and one.info["source_depth"] == 1
    assert torch.equal(one.data[0, 0, 0], one.data[0, 0, 31])
    assert m3d.generate([(one, CHOICE)])[0].text == m3d.generate([(one, CHOICE)])[0].text


def test_bf16_images_reach_the_tower_in_bf16(m3d_dir, volume):
    adapter = loaded("m3d", m3d_dir, dtype="bf16")
    _, seen = run(adapter, [(adapter.prepare(volume), OPEN)])
    assert seen["images"][0].dtype == torch.bfloat16 and adapter.generation_settings["dtype"] == "bfloat16"


def test_med3dvlm_128_slices_vision_tower_file_and_recorded_decoding(med3dvlm_dir, volume):
    adapter = loaded("med3dvlm", med3dvlm_dir)
    state = torch.load(med3dvlm_dir / VISION_TOWER_FILE, weights_only=True)
    tower = adapter.model.get_model().vision_tower.state_dict()
    assert all(torch.equal(tower[k], v) for k, v in state.items())  # reloaded from vision_tower.bin
    prepared = adapter.prepare(volume)
    _, seen = run(adapter, [(prepared, CHOICE)])
    assert seen["images"][0].shape == (1, 1, 128, 256, 256)
    assert adapter.tokenizer.decode(seen["ids"][0, 256:]) == (
        " Which structure is more left? Choices: A. liver B. spleen C. aorta D. heart")
    settings = adapter.generation_settings
    assert settings["do_sample"] is False and "temperature 1.0" in settings["authors_decoding"]


def test_without_bos_features_go_to_positions_1_to_256_as_the_authors_code(med3dvlm_dir, volume):
    """A Qwen-style tokenizer adds no BOS: <im_patch> fills 0..255 and M3D's splice writes 1..256 anyway."""
    adapter = loaded("med3dvlm", med3dvlm_dir)
    patch = adapter.tokenizer.convert_tokens_to_ids("<im_patch>")
    assert adapter.generation_settings["im_patch_start"] == 0
    prepared = adapter.prepare(volume)
    _, seen = run(adapter, [(prepared, OPEN)])
    assert torch.all(seen["ids"][0, :256] == patch)
    table = adapter.model.get_model().embed_tokens.weight
    assert torch.equal(seen["embeds"][0, 0], table[patch]) and torch.equal(seen["embeds"][0, 1:257], seen["features"][0][0])
    batch = [(prepared, OPEN), (prepared, CHOICE), (adapter.prepare(None), CHOICE)]
    padded = loaded("med3dvlm", med3dvlm_dir, batching="padded")
    with record_calls(padded.model.get_model()) as lm:
        padded_texts = [g.text for g in padded.generate(batch)]
    embeds, mask = lm.calls[0][1]["inputs_embeds"], lm.calls[0][1]["attention_mask"]
    pad = int((mask[0] == 0).sum())
    assert pad > 0 and torch.equal(embeds[0, pad + 1:pad + 257], seen["features"][0][0])
    assert padded_texts == [g.text for g in adapter.generate(batch)]


def test_misplaced_image_tokens_are_rejected(m3d_dir, volume, monkeypatch):
    adapter = loaded("m3d", m3d_dir)
    monkeypatch.setattr(adapter, "input_text", lambda p, it: "x " + "<im_patch>" * 256 + it.question)
    with pytest.raises(VolprobeError, match="positions 1..256"):
        adapter.generate([(adapter.prepare(volume), OPEN)])


def test_blank_volume_is_all_zero_input(m3d, volume):
    blank = volume.with_array(np.full(volume.shape, -1000.0, dtype=np.float32))
    prepared = m3d.prepare(blank)
    assert float(prepared.data.abs().max()) == 0.0 and prepared.input_hash != m3d.prepare(volume).input_hash
