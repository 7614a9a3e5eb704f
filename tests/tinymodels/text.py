"""An offline-trained byte-level BPE tokenizer for the tiny models."""

from __future__ import annotations

import itertools

#: A few hundred strings like the prompts the adapters send.
CORPUS = [
    f"Which structure is more {side}: the {a} or the {b}? Choices: A. {a} B. {b} Answer: SLICE {i}"
    for i, (side, a, b) in enumerate(itertools.product(
        ["left", "right", "superior", "inferior", "anterior", "posterior"],
        ["liver", "spleen", "left kidney", "right kidney", "aorta", "heart"],
        ["lung", "stomach", "urinary bladder", "pancreas", "gallbladder", "vertebra"]))
] + ["You are given axial CT slices of one patient, ordered from inferior to superior.",
     "Is there a lesion in the image? yes no", "Answer with the letter of the correct choice."]


def train_tokenizer(special_tokens: list[str], vocab_size: int = 400, bos: str | None = None,
                    tokenizer_class: str | None = None, **token_roles):
    """A ``PreTrainedTokenizerFast`` trained on :data:`CORPUS`; special tokens get the first ids, in order.

    Args:
        special_tokens: added first (ids 0..n-1), never split.
        bos: when given, prepended to every encoded text (as LLaMA/Phi tokenizers do).
        tokenizer_class: a ``transformers`` fast tokenizer class name to wrap it in where transformers 4.x
            processors insist on one (e.g. ``Qwen2TokenizerFast``); transformers 5 takes the generic class.
        token_roles: ``eos_token=...``, ``pad_token=...``, ``extra_special_tokens={...}`` etc.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, tok.token_to_id(bos))])
        token_roles["bos_token"] = bos
    if "extra_special_tokens" not in token_roles:
        token_roles["additional_special_tokens"] = [t for t in special_tokens if t not in token_roles.values()]
    import transformers

    cls = PreTrainedTokenizerFast
    if tokenizer_class and int(transformers.__version__.split(".")[0]) < 5:
        cls = getattr(transformers, tokenizer_class)
    return cls(tokenizer_object=tok, **token_roles)
