"""Benchmark: run-engine overhead per (item, control) pair, model compute excluded.

A trivial adapter (prepare and generate cost ~0; the time spent inside it is measured and
subtracted) answers every item of synthetic cases under several controls through
:func:`volprobe.probes.run.engine.run`. Everything else — reading volumes, applying controls,
building prompts, scoring, writing + fsync'ing records, the progress bar — is harness overhead.
Also checks that each (volume, control) input was prepared exactly once.

    python benchmarks/engine_overhead.py [--cases 40] [--items-per-case 10] [--shape 24 20 16]
                                         [--batch-size 1 8] [--generate-ms 0]

With real CT sizes (``--shape 512 512 300``) reading the .nii.gz dominates; the engine reads the
next case in a background thread, so with a model that computes (``--generate-ms 20``, a sleep
that releases the GIL like GPU work) the read is hidden and the overhead falls back.

Target: overhead ≤ 5 ms per (item, control) pair; exactly 1 preparation per (volume, control).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from volprobe.probes.run.engine import run
from volprobe.items import Item
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared
from volprobe.segmentation.volume import Volume, save_nifti

CONTROLS = ["full", "text_only", "blank", "shuffled_slices", "mirror_lr", "swapped_volume"]


class TrivialAdapter(ModelAdapter):
    """Answers 'A. ...' at once; counts its prepare calls and the time spent inside prepare/generate."""

    name = "trivial"

    def __init__(self, generate_s: float = 0.0) -> None:
        super().__init__()
        self.generate_s = generate_s  # simulated model compute per item (sleeps, releasing the GIL like a GPU)
        self.inside_s = 0.0
        self.prepare_calls = 0

    def prepare(self, volume) -> Prepared:
        t0 = time.perf_counter()
        self.prepare_calls += 1
        out = Prepared(data=None, input_hash="trivial" if volume is None else f"{volume.shape}",
                       no_image=volume is None)
        self.inside_s += time.perf_counter() - t0
        return out

    def generate(self, batch):
        t0 = time.perf_counter()
        out = [Generation(f"A. {item.options[0]}") for _, item in batch]
        if self.generate_s:
            time.sleep(self.generate_s * len(batch))
        self.inside_s += time.perf_counter() - t0
        return out


def ct_like(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Air around an elliptic body of soft tissue with noise (compresses about like a real CT)."""
    i, j = np.ogrid[: shape[0], : shape[1]]
    body = ((i - shape[0] / 2) / (0.45 * shape[0])) ** 2 + ((j - shape[1] / 2) / (0.35 * shape[1])) ** 2 < 1
    arr = np.where(body[:, :, None], 40, -1000) + rng.normal(0, 15, size=shape)
    return arr.astype(np.int16)


def make_items(folder: Path, n_cases: int, per_case: int, shape: tuple[int, int, int]) -> list[Item]:
    rng = np.random.default_rng(0)
    items = []
    for c in range(n_cases):
        path = folder / f"case{c}.nii.gz"
        save_nifti(Volume(ct_like(shape, rng), np.diag([0.8, 0.8, 2.0, 1.0])), path)
        for q in range(per_case):
            items.append(Item(id=f"c{c}-q{q}", question=f"Is structure {q} left of structure {q + 1}?",
                              answer="yes", answer_type="yes_no", options=["yes", "no"], case=f"case{c}",
                              patient=f"p{c}", volume_path=str(path), evidence={"axes": ["lr"]},
                              counterfactual={"mirror_lr": "no"}))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--items-per-case", type=int, default=10)
    ap.add_argument("--shape", type=int, nargs=3, default=(24, 20, 16))
    ap.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--generate-ms", type=float, default=0.0,
                    help="simulated model compute per item (a sleep: the volume read-ahead overlaps it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        items = make_items(Path(tmp), args.cases, args.items_per_case, tuple(args.shape))
        pairs = len(items) * len(CONTROLS)
        print(f"{args.cases} cases of {tuple(args.shape)} int16 voxels x {args.items_per_case} items x "
              f"{len(CONTROLS)} controls = {pairs} (item, control) pairs; simulated model compute "
              f"{args.generate_ms:g} ms/item")
        for bs in args.batch_size:
            model = TrivialAdapter(args.generate_ms / 1e3)
            t0 = time.perf_counter()
            summary = run(items, model, CONTROLS, Path(tmp) / f"run-bs{bs}", batch_size=bs, progress=True)
            total = time.perf_counter() - t0
            assert summary.written == pairs and model.prepare_calls == summary.preparations, summary
            per_item = 1e3 * total / pairs
            inside = 1e3 * model.inside_s / pairs
            reading = 1e3 * summary.volume_read_s / pairs
            overhead = per_item - inside
            expected_inputs = args.cases * (len(CONTROLS) - 1) + 1  # text_only: one input for the run
            print(f"batch size {bs:>2}: total {per_item:.3f} ms/pair, inside the adapter {inside:.4f} ms/pair, "
                  f"harness overhead {overhead:.3f} ms/pair (target <= 5 ms: {'OK' if overhead <= 5 else 'MISSED'}; "
                  f"volume reading {reading:.3f} ms/pair, hidden behind generation when it overlaps)")
            once = summary.max_preparations_per_input == 1 and summary.preparations == expected_inputs
            print(f"              preparations: {summary.preparations} for {summary.distinct_inputs} distinct "
                  f"(volume, control) inputs (expected {expected_inputs}), max per input "
                  f"{summary.max_preparations_per_input} (must be 1: {'OK' if once else 'FAILED'}), "
                  f"volumes read {summary.volumes_loaded}")


if __name__ == "__main__":
    main()
