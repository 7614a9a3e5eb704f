"""``hf`` adapter end to end on tiny Qwen2.5-VL and Gemma 3 models: the exact inputs each model receives."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from tinymodels import cached_build, record_calls, record_method
from tinymodels.hf_vlm import GEMMA_IMAGE_TOKENS, build_gemma3, build_qwen2_5_vl
from tinymodels.volumes import single_axial_slice, stored

from volprobe.items import Item
from volprobe.probes.models import load_model
from volprobe.probes.models.hf import MEDGEMMA_INSTRUCTION, preset_for_config
from volprobe.probes.models.preprocessing import GENERIC_SLICES, MEDGEMMA_SLICES, slice_images

SLICES = 3
transformers = pytest.importorskip("transformers")
if not all(hasattr(transformers, a) for a in ("Qwen2_5_VLForConditionalGeneration", "Gemma3ForConditionalGeneration")):
    pytest.skip("the hf adapter's Qwen2.5-VL and Gemma 3 need transformers >= 4.50", allow_module_level=True)
ITEMS = [Item(id="a", question="Which structure is more left?", answer="liver", options=["liver", "spleen"]),
         Item(id="b", question="Is the liver superior to the urinary bladder in this scan?", answer="yes",
              answer_type="yes_no", options=["yes", "no"])]


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    return cached_build(tmp_path_factory, "qwen2_5_vl", build_qwen2_5_vl)


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory):
    return cached_build(tmp_path_factory, "gemma3", build_gemma3)


def loaded(folder, **options):
    """The adapter as the authors' path runs it (reuse of the image prefix off: these tests read what each
    ``generate`` call receives; tests/test_reuse.py checks reuse gives the same answers)."""
    options.setdefault("reuse", False)
    adapter = load_model(f"hf:{folder}", device="cpu", dtype=options.pop("dtype", "fp32"), slices=SLICES,
                         max_new_tokens=4, **options)
    adapter.load()
    return adapter


@pytest.fixture(scope="module")
def qwen(qwen_dir):
    return loaded(qwen_dir)


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    return loaded(gemma_dir)


@pytest.fixture(scope="module")
def volume():
    return stored("LPS")


def prefill(adapter, batch):
    """Generate; return (texts, the keyword inputs handed to ``model.generate``) and check the vision encoder
    received exactly the pixel values given (or was not called without them)."""
    inner = adapter.model.model
    encoder = getattr(inner, "visual", None) or inner.vision_tower
    with record_method(adapter.model) as gen, record_calls(encoder) as vision:
        out = adapter.generate(batch)
    kwargs = gen.calls[0][1]
    if kwargs.get("pixel_values") is None:
        assert not vision.calls
    else:
        args, kw = vision.calls[0]
        received = args[0] if args else kw.get("pixel_values", kw.get("hidden_states"))
        assert torch.equal(received, kwargs["pixel_values"])
    return [g.text for g in out], kwargs


def readable(adapter, row) -> str:
    """Decoded prompt with padding removed and each run of image tokens shown as ``[IMG xN]``."""
    tok = adapter.processor.tokenizer
    image_token = tok.convert_ids_to_tokens(adapter.model.config.image_token_id)
    text = tok.decode([t for t in row.tolist() if t != tok.pad_token_id], skip_special_tokens=False)
    return re.sub(f"(?:{re.escape(image_token)})+", lambda m: f"[IMG x{m.group(0).count(image_token)}]", text)


def test_qwen_full_chat_has_each_slice_image_then_its_label(qwen, volume):
    prepared = qwen.prepare(volume)
    expected_images, info = slice_images(volume, GENERIC_SLICES.with_options({"slices": SLICES}))
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(prepared.data, expected_images))
    assert prepared.info["slice_indices"] == info["slice_indices"] and not prepared.no_image
    texts, kw = prefill(qwen, [(prepared, ITEMS[0]), (prepared, ITEMS[1])])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)

    grid = kw["image_grid_thw"]
    per_image = [int(n) for n in grid.prod(-1) // 4]  # tokens after the 2 x 2 merge
    assert grid.shape == (2 * SLICES, 3)
    instruction = qwen.instruction.replace("{n}", str(SLICES))
    for row, item in zip(kw["input_ids"], ITEMS):
        slices = "".join(f"<|vision_start|>[IMG x{per_image[i]}]<|vision_end|>SLICE {i + 1}" for i in range(SLICES))
        assert readable(qwen, row) == (f"<|im_start|>user\n{instruction}{slices}{qwen.prompt(item)}<|im_end|>\n"
                                       "<|im_start|>assistant\n")
    image_id = qwen.model.config.image_token_id
    if "mm_token_type_ids" in kw:  # transformers 5
        assert torch.equal(kw["mm_token_type_ids"].bool(), kw["input_ids"] == image_id)
    mask = kw["attention_mask"]
    assert (mask.sum(1) < mask.shape[1]).any() and torch.all(mask[:, 1:] >= mask[:, :-1])  # left padding
    # the pixels are the processor's encoding of exactly these slice images, once per item
    single = qwen.processor.image_processor(prepared.data, return_tensors="pt")["pixel_values"]
    assert torch.allclose(kw["pixel_values"], torch.cat([single, single]))


def test_qwen_text_only_has_no_image_input(qwen):
    prepared = qwen.prepare(None)
    assert prepared.no_image and prepared.data is None and prepared.info["no_image_mode"] == qwen.no_image_mode
    _, kw = prefill(qwen, [(prepared, ITEMS[0])])
    assert kw.get("pixel_values") is None and kw.get("image_grid_thw") is None
    assert readable(qwen, kw["input_ids"][0]) == f"<|im_start|>user\n{qwen.prompt(ITEMS[0])}<|im_end|>\n<|im_start|>assistant\n"
    assert not (kw["input_ids"] == qwen.model.config.image_token_id).any()


def test_qwen_mixed_batch_is_split_and_kept_in_order(qwen, volume):
    full, none = qwen.prepare(volume), qwen.prepare(None)
    mixed = qwen.generate([(none, ITEMS[0]), (full, ITEMS[1]), (none, ITEMS[1])])
    assert [g.text for g in mixed] == [qwen.generate([pair])[0].text for pair in
                                       [(none, ITEMS[0]), (full, ITEMS[1]), (none, ITEMS[1])]]


def test_qwen_greedy_is_deterministic_and_padding_does_not_change_answers(qwen, volume):
    prepared = qwen.prepare(volume)
    batch = [(prepared, ITEMS[0]), (prepared, ITEMS[1])]
    first, second = qwen.generate(batch), qwen.generate(batch)
    assert [g.text for g in first] == [g.text for g in second]
    assert [g.text for g in first] == [qwen.generate([pair])[0].text for pair in batch]
    assert qwen.generation_settings["do_sample"] is False and qwen.generation_settings["max_new_tokens"] == 4


def test_qwen_generation_config_is_inherited_and_recorded(qwen, volume):
    """Qwen2.5-VL's generation_config.json (repetition_penalty 1.05, sampling values) applies under greedy
    decoding too; every effective value is recorded and marked as inherited."""
    with record_method(qwen.model) as gen:
        qwen.generate([(qwen.prepare(volume), ITEMS[0])])
    sent = gen.calls[0][1]
    assert qwen.model.generation_config.repetition_penalty == 1.05 and "repetition_penalty" not in sent
    settings = qwen.generation_settings
    assert settings["repetition_penalty"] == 1.05 and "repetition_penalty" in settings["inherited_from_generation_config"]
    assert settings["do_sample"] is False and sent["do_sample"] is False  # ours wins over the config's True
    assert settings["preset"]["name"].startswith("generic") and "qwen2_5_vl" in settings["preset_reason"].lower()


def test_qwen_image_changes_the_answer_input(qwen, volume):
    """Different volumes give different prepared hashes and different pixel inputs."""
    other = stored("LPS", array_ras=np.flip(stored("RAS").array, axis=0).copy())
    a, b = qwen.prepare(volume), qwen.prepare(other)
    assert a.input_hash != b.input_hash
    assert qwen.prepare(stored("RAS")).input_hash == a.input_hash  # same anatomy stored differently


def test_gemma_full_chat_follows_medgemmas_ct_notebook(gemma, volume):
    """Gemma 3 (MedGemma's architecture) gets the notebook's recipe: its instruction, JPEG slices sampled as the
    notebook does, SLICE labels, the question after "Based on the visual evidence ...", 2000 new tokens."""
    prepared = gemma.prepare(volume)
    expected, info = slice_images(volume, MEDGEMMA_SLICES.with_options({"slices": SLICES}))
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(prepared.data, expected))
    assert prepared.info["slice_indices"] == [4, 7, 11] and prepared.info["image_format"] == "jpeg"
    _, kw = prefill(gemma, [(prepared, ITEMS[1]), (prepared, ITEMS[0])])
    assert kw["pixel_values"].shape == (2 * SLICES, 3, 32, 32)
    tok = gemma.processor.tokenizer
    assert gemma.instruction == MEDGEMMA_INSTRUCTION and gemma.chat.name.startswith("medgemma")
    for row, item in zip(kw["input_ids"], [ITEMS[1], ITEMS[0]]):
        slices = "".join(f"\n\n<start_of_image>[IMG x{GEMMA_IMAGE_TOKENS}]<end_of_image>\n\nSLICE {i + 1}"
                         for i in range(SLICES))
        question = ("\n\nBased on the visual evidence in the slices provided above, answer the question below. "
                    f"Provide concise reasoning and conclude with a final answer.\n\nQuestion: {gemma.prompt(item)}")
        assert readable(gemma, row) == (f"<bos><start_of_turn>user\n{MEDGEMMA_INSTRUCTION}{slices}{question}"
                                        "<end_of_turn>\n<start_of_turn>model\n")
    assert load_model(f"hf:{gemma.path}").generate_kwargs()["max_new_tokens"] is None  # decided by the config
    fresh = load_model(f"hf:{gemma.path}", dtype="fp32")
    fresh.load()
    assert fresh.generation_settings["max_new_tokens"] == 2000 and fresh.slices == 85
    assert torch.equal(kw["token_type_ids"].bool(), kw["input_ids"] == tok.image_token_id)
    projector = gemma.model.model.multi_modal_projector.mm_input_projection_weight
    assert projector.abs().sum() > 0  # the tiny model's projector was re-initialised (a fresh Gemma 3 zeroes it)


def test_gemma_text_only(gemma):
    _, kw = prefill(gemma, [(gemma.prepare(None), ITEMS[0])])
    assert kw.get("pixel_values") is None
    expected = f"<bos><start_of_turn>user\n{gemma.prompt(ITEMS[0])}<end_of_turn>\n<start_of_turn>model\n"
    assert readable(gemma, kw["input_ids"][0]) == expected


def test_single_slice_volume_gives_one_image(gemma, volume):
    prepared = gemma.prepare(single_axial_slice(volume))
    assert len(prepared.data) == 1 and prepared.info["slices"] == 1
    _, kw = prefill(gemma, [(prepared, ITEMS[0])])
    text = readable(gemma, kw["input_ids"][0])
    assert text.count("<start_of_image>") == 1 and "SLICE 1" in text and "SLICE 2" not in text
    assert gemma.instruction in text


def test_bf16_on_cpu_casts_images_and_weights(qwen_dir, volume):
    adapter = loaded(qwen_dir, dtype="bf16")
    _, kw = prefill(adapter, [(adapter.prepare(volume), ITEMS[0])])
    assert kw["pixel_values"].dtype == torch.bfloat16 and next(adapter.model.parameters()).dtype == torch.bfloat16
    assert kw["input_ids"].dtype == torch.long and adapter.generation_settings["dtype"] == "bfloat16"


def test_preset_is_chosen_by_config_not_folder_name(qwen_dir, gemma_dir, tmp_path):
    """A Gemma 3 checkpoint renamed like Qwen still gets MedGemma's recipe, and a Qwen one named medgemma not."""
    shutil.copytree(gemma_dir, tmp_path / "Qwen2.5-VL-3B-Instruct")
    shutil.copytree(qwen_dir, tmp_path / "medgemma-1.5-4b-it")
    gemma = load_model(f"hf:{tmp_path / 'Qwen2.5-VL-3B-Instruct'}", dtype="fp32")
    gemma.load()
    qwen = load_model(f"hf:{tmp_path / 'medgemma-1.5-4b-it'}", dtype="fp32")
    qwen.load()
    assert (gemma.chat.name, gemma.slices, gemma.generate_kwargs()["max_new_tokens"]) == ("medgemma", 85, 2000)
    assert (qwen.chat.name, qwen.slices, qwen.generate_kwargs()["max_new_tokens"]) == ("generic", 16, 64)
    assert "Gemma3ForConditionalGeneration" in gemma.generation_settings["preset_reason"]
    assert preset_for_config({"architectures": ["LlavaForConditionalGeneration"],
                              "_name_or_path": "google/medgemma-27b-it"})[0] == "medgemma"
    forced = load_model(f"hf:{gemma_dir}", dtype="fp32", preset="generic", slices="8")
    forced.load()
    assert (forced.chat.name, forced.slices) == ("generic+slices", 8)


def test_image_processing_is_cached_per_prepared_volume_and_verified(qwen_dir, volume):
    adapter = loaded(qwen_dir)
    cache = adapter.processor.image_processor
    prepared = adapter.prepare(volume)
    batch = [(prepared, ITEMS[0]), (prepared, ITEMS[1]), (prepared, ITEMS[0])]
    first = adapter.model_inputs(batch)
    assert cache.state == "on" and len(cache.entries) == 1  # the join matched a real call on the batch
    again = adapter.model_inputs(batch)
    assert cache.hits >= 5
    cache.state = "off"
    uncached = adapter.model_inputs(batch)
    for key in uncached:
        assert torch.equal(first[key], uncached[key]) and torch.equal(again[key], uncached[key])


def test_image_cache_switches_off_when_outputs_do_not_join():
    from transformers import BatchFeature

    from volprobe.probes.models.hf import CachedImageProcessor

    def flat(images, **kwargs):  # one row per image of every chat: joins along the first axis
        return BatchFeature({"pixel_values": torch.tensor([[float(len(chat))] for chat in images for _ in chat])})

    def per_batch(images, **kwargs):  # one value for the whole batch: does not join
        return BatchFeature({"chats": torch.tensor([len(images)])})

    a, b = [object(), object()], [object()]
    joining = CachedImageProcessor(flat)
    assert joining([a, b])["pixel_values"].tolist() == [[2.0], [2.0], [1.0]] and joining.state == "on"
    assert joining([b, a])["pixel_values"].tolist() == [[1.0], [2.0], [2.0]] and joining.hits == 2
    refusing = CachedImageProcessor(per_batch)
    assert refusing([a, b])["chats"].tolist() == [2] and refusing.state == "off"
    assert refusing([a, b])["chats"].tolist() == [2]


def test_loads_offline_from_a_hugging_face_cache_snapshot(qwen_dir, tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-VL-3B-Instruct"
    shutil.copytree(qwen_dir, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter = loaded("Qwen/Qwen2.5-VL-3B-Instruct")
    assert adapter.revision == "0123abc" and adapter.weights.source == "hf-cache"
    assert adapter.weights.repo_id == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_records_and_manifest_carry_every_effective_setting(qwen_dir, tmp_path):
    import json

    from volprobe.probes.run.engine import run
    from volprobe.segmentation.volume import save_nifti

    save_nifti(stored("LPS"), tmp_path / "ct.nii.gz")
    items = [Item(id=it.id, question=it.question, answer=it.answer, answer_type=it.answer_type, options=it.options,
                  case="ct", volume_path=str(tmp_path / "ct.nii.gz")) for it in ITEMS]
    adapter = load_model(f"hf:{qwen_dir}", dtype="fp32", slices=SLICES, max_new_tokens=2)
    run(items, adapter, ["full", "text_only"], tmp_path / "run", progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "records.jsonl")]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    session = manifest["run"]["sessions"][-1]["generation"]
    for generation in [r["generation"] for r in records] + [session]:
        assert generation["repetition_penalty"] == 1.05 and generation["do_sample"] is False
        assert generation["max_new_tokens"] == 2 and generation["preset"]["slices"]["slices"] == SLICES
        assert generation["libraries"]["transformers"]
