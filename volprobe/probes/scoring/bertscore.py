"""BERTScore of open answers — only when its model is already on this machine; never downloads.

Uses the ``bert-score`` package (optional dependency: ``pip install bert-score``) on a *local* model:
a folder, or a Hugging Face id found in the local cache. Default ``roberta-large`` (layer 17, the
package's English default), without idf weighting or baseline rescaling. When the package or the
model is missing, the result carries ``f1=None`` and a note saying why; callers print that note
instead of a number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from volprobe.probes.scoring.aggregate import TaskSummary
from volprobe.records import RunRecord

DEFAULT_MODEL = "roberta-large"
_MAX_TOKENS = 512


@dataclass
class BertScoreResult:
    """Per-pair BERTScore F1 (None when skipped) and a note: what was used, or why it was skipped."""

    f1: list[float] | None
    note: str


def locate_model(model: str) -> str | None:
    """A local folder for ``model`` (a folder path, or a Hugging Face id in the local cache), else None."""
    if Path(model).is_dir():
        return str(Path(model))
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, local_files_only=True)
    except Exception:  # noqa: BLE001  (not cached, bad id, no hub library: all mean "not available")
        return None


def bertscore(predictions: Sequence[str], golds: Sequence[str], model: str = DEFAULT_MODEL,
              num_layers: int | None = None, device: str = "cpu", batch_size: int = 64) -> BertScoreResult:
    """BERTScore F1 of each (prediction, gold) pair, or a skip note (module docstring)."""
    local = locate_model(model)
    if local is None:
        return BertScoreResult(None, f"BERTScore skipped: model {model!r} is not on this machine (not a folder, "
                                     "not in the Hugging Face cache); pass a local model folder")
    try:
        import bert_score
    except ImportError:
        return BertScoreResult(None, "BERTScore skipped: the bert-score package is not installed "
                                     "(pip install bert-score)")
    if num_layers is None:
        num_layers = bert_score.utils.model2layers.get(Path(model).name) or _last_layer(local)
    scorer = bert_score.BERTScorer(model_type=local, num_layers=num_layers, device=device, batch_size=batch_size)
    tokenizer = scorer._tokenizer  # bert-score passes model_max_length as max_length; some configs leave it ~1e30
    tokenizer.model_max_length = min(int(min(tokenizer.model_max_length, 1e9)), _MAX_TOKENS)
    _p, _r, f1 = scorer.score(list(predictions), list(golds))
    return BertScoreResult([float(v) for v in f1], f"BERTScore F1 with {model} (layer {num_layers}, no idf, "
                                                   "no rescaling)")


def _last_layer(local: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(local).num_hidden_layers)


def add_bertscore(summaries: list[TaskSummary], records: Sequence[RunRecord], model: str = DEFAULT_MODEL,
                  **kwargs) -> str:
    """Add ``bertscore_f1`` (mean over open/numeric records with an output) to each summary; returns the note."""
    open_records = [r for r in records if r.answer_type in ("open", "numeric") and r.raw_output]
    if not open_records:
        return "BERTScore: no open answers with model output"
    result = bertscore([r.raw_output for r in open_records], [r.gold for r in open_records], model, **kwargs)
    if result.f1 is None:
        return result.note
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for rec, f1 in zip(open_records, result.f1):
        if not math.isnan(f1):
            sums[(rec.model, rec.control, rec.task)].append(f1)
    for s in summaries:
        values = sums.get((s.model, s.control, s.task))
        if values:
            s.scores["bertscore_f1"] = sum(values) / len(values)
    return result.note
