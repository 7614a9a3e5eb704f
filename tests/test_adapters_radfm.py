"""``radfm`` on a tiny checkout laid out like RadFM's ``Quick_demo``: its ``Language_files`` (RadFM's tokenizer
config with empty special tokens, a SentencePiece model, a LLaMA config without weights), Med-KEBERT asked
for by hub id, a checkpoint with the buffers old transformers saved.

Expected token ids are computed here from RadFM's recipe (``Quick_demo/test.py``: the slow LLaMA tokenizer,
``<image>``, ``</image>``, ``<image0>`` .. ``<image3199>`` added, BOS 1): ``<image>`` = V, ``</image>`` = V + 1,
``<imageK>`` = V + 2 + K for a SentencePiece vocabulary of V, the text encoded by SentencePiece.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tinymodels import cached_build, record_calls, record_method
from tinymodels.radfm import SP_VOCAB, SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG, build_radfm
from tinymodels.volumes import single_axial_slice, stored

from volprobe.errors import VolprobeError, WeightsMissingError
from volprobe.items import Item
from volprobe.probes.models import load_model
from volprobe.probes.models.base import default_prompt
from volprobe.probes.models.preprocessing import RADFM_PRESET, radfm_volume
from volprobe.probes.models.radfm import RadFMTokenizer, image_placeholder, load_checkpoint

ITEM = Item(id="r", question="Which structure is more left?", answer="liver", options=["liver", "spleen"])
OTHER = Item(id="s", question="Is the heart superior to the urinary bladder?", answer="yes", answer_type="yes_no",
             options=["yes", "no"])
RAD_ITEM = Item(id="3drad/test/T4/Atelectasis/2", question="Does the CT scan exhibit atelectasis?", answer="No",
                answer_type="yes_no", options=["Yes", "No"], metadata={"benchmark": "3drad"})
V = SP_VOCAB


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    return cached_build(tmp_path_factory, "radfm", build_radfm)


def loaded(folder, **options):
    """The adapter as the authors' path runs it (reuse of the image prefix off: these tests read what each
    ``generate`` call receives; tests/test_reuse.py checks reuse gives the same answers)."""
    options.setdefault("reuse", False)
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


@pytest.fixture(scope="module")
def sentencepiece_model(checkout):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(checkout / "Language_files" / "tokenizer.model"))


def official_ids(sp, question: str, image: bool = True) -> list[int]:
    """RadFM's prompt ids: BOS, then <image> <image0..31> </image>, then the question by SentencePiece."""
    head = [1] + ([V] + [V + 2 + k for k in range(32)] + [V + 1] if image else [])
    return head + sp.encode(question)


def run(adapter, batch):
    """Generate, recording the token ids and vision_x the embedding layer received."""
    with record_calls(adapter.model.embedding_layer) as emb:
        texts = [g.text for g in adapter.generate(batch)]
    return texts, [(args[0], args[1]) for args, _ in emb.calls]


def test_language_files_are_radfms_and_autotokenizer_cannot_load_them(checkout):
    """The fixture reproduces RadFM's folder: transformers 5 recurses without end, 4.x returns False."""
    from transformers import AutoTokenizer

    lang = checkout / "Language_files"
    assert (lang / "tokenizer_config.json").read_text() == TOKENIZER_CONFIG
    assert (lang / "special_tokens_map.json").read_text() == SPECIAL_TOKENS_MAP
    config = json.loads((lang / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 1, -1)
    assert not any(p.suffix in (".bin", ".safetensors") for p in lang.iterdir())  # no LLaMA weights there
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(lang), local_files_only=True)
    except RecursionError:
        return
    assert not hasattr(tokenizer, "encode")


def test_prompt_ids_equal_radfms_recipe(radfm, volume, sentencepiece_model):
    _, calls = run(radfm, [(radfm.prepare(volume), RAD_ITEM)])
    question = "Does the CT scan exhibit atelectasis?\nChoices: A. Yes B. No C. - D. -\nAnswer:"
    assert radfm.prompt(RAD_ITEM) == question  # 3D-RAD's RadFM evaluation (rad_dataset.py)
    assert calls[0][0][0].tolist() == official_ids(sentencepiece_model, question)
    assert calls[0][0][0].tolist()[:3] == [1, V, V + 2]  # BOS 1, <image> 32000, <image0> 32002 at RadFM's size
    assert load_model("radfm", prompt_style="plain").prompt(ITEM) == default_prompt(ITEM)


def test_tokenizer_matches_the_slow_llama_tokenizer_when_transformers_has_it(checkout):
    """On transformers 4.x (sentencepiece LlamaTokenizer), RadFM's own get_tokenizer gives the same ids."""
    import transformers

    if not issubclass(transformers.LlamaTokenizer, transformers.PreTrainedTokenizer) or \
            "tokenizers" in transformers.LlamaTokenizer.__mro__[1].__module__:
        pytest.skip("transformers 5 has no sentencepiece LlamaTokenizer")
    slow = transformers.LlamaTokenizer.from_pretrained(str(checkout / "Language_files"))
    slow.add_special_tokens({"additional_special_tokens": ["<image>", "</image>"] +
                             [f"<image{i}>" for i in range(3200)]})
    slow.pad_token_id, slow.bos_token_id, slow.eos_token_id = 0, 1, 2
    ours = RadFMTokenizer(checkout / "Language_files" / "tokenizer.model")
    for text in (image_placeholder() + "Which structure is more left?\nChoices: A. liver B. spleen\nAnswer:",
                 "Is the liver superior?", "x</image>  y <image3> z", "<image>" + "".join(f"<image{i}>" for i in range(64))):
        assert ours.encode(text) == slow(text)["input_ids"], text
        # (4.4x's slow decode keeps a leading space that 4.28's SentencePiece decode drops; answers are stripped)
        assert ours.decode(ours.encode(text)).strip() == slow.decode(slow(text)["input_ids"], skip_special_tokens=True).strip()


def test_full_input_image_tokens_then_question_and_grey_volume_in_3_channels(radfm, volume):
    prepared = radfm.prepare(volume)
    assert prepared.info["shape"] == [1, 1, 3, 64, 64, 12] and prepared.info["preset"] == "radfm+size"
    expected, _ = radfm_volume(volume, RADFM_PRESET.with_options({"size": "64,64"}))
    assert torch.equal(prepared.data, expected)
    _, calls = run(radfm, [(prepared, ITEM)])
    ids, vision_x = calls[0]
    assert vision_x.shape == (1, 1, 3, 64, 64, 12)  # B, S, C, H, W, D
    assert all(torch.equal(vision_x[0, 0, c], expected[0]) for c in range(3))
    row = ids[0].tolist()
    assert row[:35] == [1, V] + [V + 2 + k for k in range(32)] + [V + 1]
    assert radfm.tokenizer.decode(row[35:]) == radfm.prompt(ITEM).replace("\n", " ")


def test_text_only_is_radfm_zero_vision_without_image_tokens(radfm, sentencepiece_model):
    prepared = radfm.prepare(None)
    assert prepared.no_image and "zero" in prepared.info["no_image_mode"]
    _, calls = run(radfm, [(prepared, ITEM)])
    ids, vision_x = calls[0]
    assert ids[0].tolist() == official_ids(sentencepiece_model, radfm.prompt(ITEM), image=False)
    assert vision_x.shape == (1, 1, 3, 64, 64, 4) and float(vision_x.abs().max()) == 0.0


def test_generation_stops_at_end_of_sequence_and_says_so(checkout, volume):
    """RadFM's config names eos id 1; volprobe stops at </s> (2) unless asked not to, and records which."""
    class AlwaysEOS(torch.nn.Module):
        def forward(self, hidden):
            logits = torch.zeros(*hidden.shape[:-1], V, dtype=hidden.dtype)
            logits[..., 2] = 10.0
            return logits

    lengths = {}
    for stop in (True, False):
        adapter = loaded(checkout, stop_at_eos=stop)
        adapter.model.lang_model.lm_head = AlwaysEOS()
        original = adapter.model.lang_model.generate
        outputs = []
        adapter.model.lang_model.generate = lambda *a, **k: outputs.append(original(*a, **k)) or outputs[-1]
        with record_method(adapter.model.lang_model) as gen:
            text = adapter.generate([(adapter.prepare(volume), ITEM)])[0].text
        lengths[stop] = outputs[0].shape[1]
        settings = adapter.generation_settings
        assert text == "" and settings["max_new_tokens"] == 4
        assert (gen.calls[0][1].get("eos_token_id"), settings["eos_token_id"]) == ((2, 2) if stop else (None, 1))
        assert settings["stop"].startswith("</s>" if stop else "none")
    assert lengths == {True: 1, False: 4}


def test_checkpoint_tolerates_only_the_obsolete_buffers(radfm, checkout, tmp_path):
    assert radfm.dropped_keys == ["embedding_layer.bert_model.embeddings.position_ids",
                                  "lang_model.model.layers.0.self_attn.rotary_emb.inv_freq"]
    assert radfm.generation_settings["checkpoint_keys_dropped"] == radfm.dropped_keys
    state = torch.load(checkout / "pytorch_model.bin", weights_only=True)
    extra = dict(state, **{"embedding_layer.old_head.weight": torch.zeros(2)})
    torch.save(extra, tmp_path / "extra.bin")
    with pytest.raises(VolprobeError, match="1 keys the model does not have.*old_head"):
        load_checkpoint(radfm.model, tmp_path / "extra.bin")
    short = {k: v for k, v in state.items() if not k.startswith("embedding_layer.fc.")}
    torch.save(short, tmp_path / "short.bin")
    with pytest.raises(VolprobeError, match="2 weights the model needs.*embedding_layer.fc.bias"):
        load_checkpoint(radfm.model, tmp_path / "short.bin")


def test_med_kebert_comes_from_the_local_folder_not_the_hub(radfm, checkout, tmp_path):
    bert = radfm.model.embedding_layer.bert_model
    assert bert.config.hidden_size == 16 and radfm.model.embedding_layer.bert_tokenizer.vocab_size == 10
    partial = tmp_path / "RadFM"
    shutil.copytree(checkout, partial)
    shutil.rmtree(partial / "MedKEBERT")
    with pytest.raises(WeightsMissingError, match="Med-KEBERT.*MedKEBERT"):
        loaded(partial)


def test_default_image_size_is_512_and_single_slice_becomes_depth_4(checkout, volume):
    adapter = load_model(f"radfm:{checkout}")
    assert adapter.image_size == 512 and adapter.max_new_tokens == 200 and adapter.prompt_style == "3drad"
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


def test_missing_weights_are_named(checkout, tmp_path):
    partial = tmp_path / "RadFM"
    shutil.copytree(checkout, partial, ignore=shutil.ignore_patterns("pytorch_model.bin"))
    with pytest.raises(WeightsMissingError, match="pytorch_model.bin"):
        loaded(partial)
