"""Encode once, ask many: adapters that keep an input's image prefix (vision features and the language model's
key/value cache) give the answers of recomputing everything, in float32 on the CPU.

Tiny random models answer nearly the same text to every question, so besides comparing answers, each test
compares the next-token scores of the cached path with a full forward pass for several questions and checks
that those scores differ between questions (a cached path that lost the question's tokens would fail)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import cached_build
from tinymodels.hf_vlm import build_gemma3, build_qwen2_5_vl
from tinymodels.lamed import build_lamed
from tinymodels.radfm import build_radfm

from volprobe.items import Item
from volprobe.probes.models import load_model
from volprobe.probes.models.vlm_common import cached_generation, copied_cache
from volprobe.probes.run.engine import run
from volprobe.segmentation.volume import Volume

WORDS = ["liver", "spleen", "kidney", "aorta", "heart", "lung", "stomach", "colon"]
ITEMS = [Item(id=f"q{i}", question=f"Is the {WORDS[i % 8]} {['above', 'left of', 'behind'][i % 3]} the "
              f"{WORDS[(3 * i + 1) % 8]}?", answer="yes", options=["yes", "no"], answer_type="yes_no", case="c",
              volume_path=None) for i in range(6)]


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    return Volume(array=rng.normal(0, 300, (40, 40, 30)).astype(np.int16), affine=np.diag([1.5, 1.5, 2.0, 1.0]))


def _answers(spec, volume, **options):
    adapter = load_model(spec, dtype="fp32", max_new_tokens=4, **options)
    adapter.load()
    prepared = adapter.prepare(volume)
    one_by_one = [g.text for it in ITEMS for g in adapter.generate([(prepared, it)])]
    batched = [g.text for g in adapter.generate([(prepared, it) for it in ITEMS])]
    return adapter, prepared, one_by_one, batched


def _scores_agree(full: list, cached: list) -> None:
    for f, c in zip(full, cached):
        assert torch.allclose(f, c, atol=1e-5, rtol=1e-5), float((f - c).abs().max())
    assert max(float((full[0] - f).abs().max()) for f in full[1:]) > 1e-4, "questions must change the scores"


@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_m3d_reuse_gives_the_answers_of_recomputing(tmp_path_factory, volume, bos):
    folder = cached_build(tmp_path_factory, f"lamed_reuse_{bos}", lambda f: build_lamed(f, bos=bos))
    adapter, prepared, on_single, on_batch = _answers(f"m3d:{folder}", volume)
    _, _, off_single, off_batch = _answers(f"m3d:{folder}", volume, reuse=False)
    assert on_single == off_single == on_batch == off_batch
    assert adapter.generation_settings["reuse_image_prefix"] is True
    model, tok = adapter.model, adapter.tokenizer
    full, cached = [], []
    with cached_generation():  # inference mode, past_key_values allowed quietly
        for item in ITEMS:
            ids = tok([adapter.input_text(prepared, item)], return_tensors="pt")["input_ids"]
            embeds = model.prepare_inputs_for_multimodal(ids, None, None, None, None, adapter._images([prepared]))[4]
            full.append(model(inputs_embeds=embeds).logits[0, -1])
            _, cache = adapter._image_prefix(prepared, ids[:, :1 + adapter.image_tokens])
            rest = model.get_model().embed_tokens(ids[:, 1 + adapter.image_tokens:])
            cached.append(model(inputs_embeds=rest, past_key_values=copied_cache(cache, 1)).logits[0, -1])
    _scores_agree(full, cached)


def test_radfm_reuse_gives_the_answers_of_recomputing(tmp_path_factory, volume):
    folder = cached_build(tmp_path_factory, "radfm", build_radfm)
    adapter, prepared, on_single, on_batch = _answers(f"radfm:{folder}", volume, image_size=64)
    _, _, off_single, off_batch = _answers(f"radfm:{folder}", volume, image_size=64, reuse=False)
    assert on_single == off_single == on_batch == off_batch
    layer, lm = adapter.model.embedding_layer, adapter.model.lang_model
    full, cached = [], []
    with cached_generation():
        for item in ITEMS:
            ids = adapter.tokenizer([adapter.input_text(prepared, item)], return_tensors="pt")["input_ids"]
            embeds, _ = layer(ids, adapter.vision_x([prepared]))
            full.append(lm(inputs_embeds=embeds).logits[0, -1])
            _, cache = prepared.reuse["radfm_prefix"]
            rest = layer.weight[ids[:, 35:]]
            cached.append(lm(inputs_embeds=rest, past_key_values=copied_cache(cache, 1)).logits[0, -1])
    _scores_agree(full, cached)


@pytest.mark.parametrize("builder", [build_qwen2_5_vl, build_gemma3], ids=["qwen2.5-vl", "gemma3"])
def test_hf_reuse_checks_itself_and_gives_the_answers_of_recomputing(tmp_path_factory, volume, builder):
    folder = cached_build(tmp_path_factory, builder.__name__, builder)
    adapter, prepared, on_single, on_batch = _answers(f"hf:{folder}", volume, slices=4)
    _, _, off_single, off_batch = _answers(f"hf:{folder}", volume, slices=4, reuse=False)
    assert on_single == off_single and on_batch == off_batch
    assert adapter.reuse_state == "on" and adapter.generation_settings["reuse_image_prefix"] == "on"
    assert "hf_prefix" in prepared.reuse


def test_hf_reuse_switches_itself_off_when_the_cache_would_change_answers(tmp_path_factory, volume, monkeypatch):
    """Continuing from the cache with wrong multimodal rotary offsets (a model whose state the cached path
    restored wrongly, simulated) is caught by the first comparison with recomputing."""
    import volprobe.probes.models.hf as hf

    folder = cached_build(tmp_path_factory, "build_qwen2_5_vl", build_qwen2_5_vl)
    adapter = load_model(f"hf:{folder}", dtype="fp32", max_new_tokens=4, slices=4)
    adapter.load()
    real = hf._set_rope_state
    monkeypatch.setattr(hf, "_set_rope_state", lambda model, deltas, rows: real(model, deltas + 7, rows))
    prepared = adapter.prepare(volume)
    plain = load_model(f"hf:{folder}", dtype="fp32", max_new_tokens=4, slices=4, reuse=False)
    plain.load()
    expected = [g.text for g in plain.generate([(plain.prepare(volume), ITEMS[0])])]
    assert [g.text for g in adapter.generate([(prepared, ITEMS[0])])] == expected
    assert adapter.reuse_state == "off" and "differed" in adapter.generation_settings["reuse_image_prefix"]


def test_the_engine_records_the_same_answers_with_and_without_reuse(tmp_path_factory, tmp_path):
    """Through the run engine, several questions per volume: the records' answers are equal."""
    from runfixtures import make_items, write_cases

    folder = cached_build(tmp_path_factory, "lamed_reuse_True", lambda f: build_lamed(f, bos=True))
    items = make_items(write_cases(tmp_path / "cases"), per_case=4)
    outputs = {}
    for reuse in (True, False):
        model = load_model(f"m3d:{folder}", dtype="fp32", max_new_tokens=3, reuse=reuse)
        run(items, model, ["full", "shuffled_slices"], tmp_path / f"run-{reuse}", progress=False)
        import json

        outputs[reuse] = {(r["control"], r["item_id"]): r["raw_output"]
                          for r in map(json.loads, open(tmp_path / f"run-{reuse}" / "records.jsonl"))}
    assert outputs[True] == outputs[False] and len(outputs[True]) == 2 * len(items)
