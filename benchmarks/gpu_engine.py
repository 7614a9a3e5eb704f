"""GPU check: does `probe run`'s engine keep a real-size VLM busy? Engine vs a bare ``generate`` loop.

For each model, full-size architectures with random weights are built from their configs (nothing is
downloaded): Qwen2.5-VL-3B (``hf`` adapter, Qwen2.5-VL-3B-Instruct's config.json sizes) and an
M3D-LaMed-Phi-3-4B-sized model (``m3d`` adapter; the architecture of ``tests/tinymodels/lamed_modeling.py``
with Phi-3-mini's sizes and a 768-wide vision feature). Synthetic CTs are written as NIfTI; ``--items``
items (10 per case) run under two controls through :func:`volprobe.probes.run.engine.run` (volume
reading, controls, preprocessing, the processor, generation, scoring, records written and fsync'ed).
Every ``model.generate`` call of that run is recorded, then replayed as a bare loop (the same tensors,
the same batches, nothing else). Both force the same output length (``min_new_tokens`` =
``max_new_tokens``) so random weights do not stop early in one and not the other.

    python benchmarks/gpu_engine.py --device cuda --dtype bf16            # on a GPU (about 5-8 minutes)
    python benchmarks/gpu_engine.py --tiny                               # CPU, tiny models: proves it runs

Prints (item, control) pairs per second through the engine and through the bare loop, and their
ratio. Target: engine >= 90% of the bare loop. ``--out FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny-model builders (architectures and processors)

from volprobe.items import Item  # noqa: E402
from volprobe.probes.models.base import load_model  # noqa: E402
from volprobe.probes.run.engine import run  # noqa: E402
from volprobe.segmentation.volume import Volume, save_nifti  # noqa: E402

CONTROLS = ["full", "text_only"]
ITEMS_PER_CASE = 10


def ct_like(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Air around an elliptic body of soft tissue with a bright block and noise (int16 HU)."""
    i, j = np.ogrid[: shape[0], : shape[1]]
    body = ((i - shape[0] / 2) / (0.45 * shape[0])) ** 2 + ((j - shape[1] / 2) / (0.35 * shape[1])) ** 2 < 1
    arr = np.where(body[:, :, None], 40, -1000) + rng.normal(0, 15, size=shape)
    arr[shape[0] // 4: shape[0] // 3, shape[1] // 2: shape[1] // 2 + 8, :] = 700
    return arr.astype(np.int16)


def make_items(folder: Path, n_items: int, shape: tuple[int, int, int]) -> list[Item]:
    """``n_items`` items on CTs of ``shape`` (10 per case), all with the same question (equal prompt lengths, so
    M3D's exact batching fills whole batches)."""
    rng = np.random.default_rng(0)
    items = []
    for c in range(max(1, -(-n_items // ITEMS_PER_CASE))):
        path = folder / f"case{c}.nii.gz"
        save_nifti(Volume(ct_like(shape, rng), np.diag([0.8, 0.8, 2.0, 1.0])), path)
        for q in range(ITEMS_PER_CASE):
            if len(items) == n_items:
                break
            items.append(Item(id=f"c{c}-q{q}", question="Is the bright block left of the midline?", answer="yes",
                              answer_type="yes_no", options=["yes", "no"], case=f"case{c}", patient=f"p{c}",
                              volume_path=str(path)))
    return items


@contextlib.contextmanager
def replaced(owner, name: str, value):
    """``owner.name = value`` for the duration (a class attribute or an instance attribute)."""
    had = name in vars(owner)
    old = vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


def build(kind: str, folder: Path, tiny: bool, dtype, device):
    """A model folder (config, tokenizer/processor, code; no weights) and the model built in memory from it."""
    import torch

    if kind == "qwen":
        from tinymodels.hf_vlm import QWEN_3B, QWEN_TINY, write_qwen2_5_vl
        from transformers import Qwen2_5_VLForConditionalGeneration

        # full size: a 512 x 512 slice becomes 18 x 18 merged patches as Qwen2.5-VL's default processor would
        config = write_qwen2_5_vl(folder, QWEN_TINY if tiny else QWEN_3B, weights=False,
                                  image_pixels=(4, 16) if tiny else (4, 1280))
        cls, spec = Qwen2_5_VLForConditionalGeneration, f"hf:{folder}"
    else:
        from tinymodels.lamed import LAMED_PHI3_4B, LAMED_TINY, _remote_code, write_lamed

        config = write_lamed(folder, sizes=LAMED_TINY if tiny else LAMED_PHI3_4B, weights=False)
        cls, spec = _remote_code(folder).TinyLamedForCausalLM, f"m3d:{folder}"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    n_params = sum(p.numel() for p in model.parameters())
    return spec, model.eval(), n_params


def timed_engine(adapter, items, out_dir: Path, batch_size: int, device) -> tuple[float, list]:
    """Seconds for the engine run, and every ``model.generate`` call it made (args, kwargs)."""
    calls = []
    original = adapter.model.generate

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    with replaced(adapter.model, "generate", recording):
        sync(device)
        t0 = time.perf_counter()
        summary = run(items, adapter, CONTROLS, out_dir, batch_size=batch_size, progress=False)
        sync(device)
        seconds = time.perf_counter() - t0
    assert summary.written == len(items) * len(CONTROLS) and summary.errors == 0, str(summary)
    return seconds, calls


def timed_bare(model, calls, device) -> float:
    """Seconds for the same ``generate`` calls, replayed back to back."""
    import torch

    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for args, kwargs in calls:
            model.generate(*args, **kwargs)
    sync(device)
    return time.perf_counter() - t0


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench(kind: str, args, tmp: Path) -> dict:
    import torch

    from volprobe.probes.models.weights import resolve_dtype, resolve_device

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    folder = tmp / kind
    folder.mkdir()
    t0 = time.perf_counter()
    spec, model, n_params = build(kind, folder, args.tiny, dtype, device)
    if (folder / "generation_config.json").is_file():  # e.g. Qwen2.5-VL's repetition penalty, as when loaded
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.generation_config.min_new_tokens = args.max_new_tokens  # same output length in both loops
    built_s = time.perf_counter() - t0
    # every question a full generate call, as the bare loop replays it (the image-prefix reuse that is on by
    # default hands generate a cache the call consumes; benchmarks/engine_scale.py measures what reuse saves)
    options = {"max_new_tokens": args.max_new_tokens, "reuse": False}
    if kind == "qwen":
        from transformers import AutoModelForImageTextToText as Auto

        options["slices"] = args.slices
    else:
        from transformers import AutoModelForCausalLM as Auto  # batching "exact": the authors' model.generate call
    adapter = load_model(spec, device=args.device, dtype=args.dtype, **options)
    with replaced(Auto, "from_pretrained", classmethod(lambda cls, *a, **k: model)):
        adapter.load()
    items = make_items(tmp / f"{kind}-cts", args.items, tuple(args.shape))
    warm = make_items(tmp / f"{kind}-warm", min(4, args.items), tuple(args.shape))
    timed_engine(adapter, warm, tmp / f"{kind}-warm-run", args.batch_size, device)  # CUDA kernels, caches
    engine_s, calls = timed_engine(adapter, items, tmp / f"{kind}-run", args.batch_size, device)
    bare_s = timed_bare(adapter.model, calls, device)
    pairs = len(items) * len(CONTROLS)
    result = {"model": kind, "spec": spec.split(":")[0], "parameters": n_params, "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "dtype": str(dtype).removeprefix("torch."), "items": len(items), "controls": CONTROLS, "pairs": pairs,
              "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "generate_calls": len(calls),
              "build_s": round(built_s, 2), "engine_s": round(engine_s, 3), "bare_s": round(bare_s, 3),
              "engine_pairs_per_s": round(pairs / engine_s, 3), "bare_pairs_per_s": round(pairs / bare_s, 3),
              "ratio": round(bare_s / engine_s, 4)}
    adapter = model = None  # free the GPU memory before the next model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu [default: cuda; cpu with --tiny]")
    ap.add_argument("--dtype", default=None, help="bf16, fp16, fp32 [default: bf16; fp32 with --tiny]")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU (a run-through, not a measurement)")
    ap.add_argument("--models", nargs="+", choices=["qwen", "m3d"], default=["qwen", "m3d"])
    ap.add_argument("--items", type=int, default=None, help="items (each under both controls) [default: 200; 6 tiny]")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="[default: 16; 2 tiny]")
    ap.add_argument("--slices", type=int, default=16, help="slices shown to Qwen2.5-VL")
    ap.add_argument("--shape", type=int, nargs=3, default=None, help="CT voxels [default: 512 512 96; 24 20 16 tiny]")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    args.dtype = args.dtype or ("fp32" if args.tiny else "bf16")
    args.items = args.items or (6 if args.tiny else 200)
    args.max_new_tokens = args.max_new_tokens or (2 if args.tiny else 16)
    args.shape = args.shape or ([24, 20, 16] if args.tiny else [512, 512, 96])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models:
            r = bench(kind, args, Path(tmp))
            results.append(r)
            verdict = "OK" if r["ratio"] >= 0.9 else "MISSED"
            print(f"{kind:>4} ({r['parameters'] / 1e9:.2f} B parameters, {r['dtype']} on {r['gpu'] or r['device']}): "
                  f"{r['pairs']} (item, control) pairs, batch {r['batch_size']}, {r['max_new_tokens']} new tokens, "
                  f"{r['generate_calls']} generate calls\n"
                  f"      engine {r['engine_pairs_per_s']:.2f} pairs/s ({r['engine_s']:.1f} s), bare generate loop "
                  f"{r['bare_pairs_per_s']:.2f} pairs/s ({r['bare_s']:.1f} s): engine at {100 * r['ratio']:.1f}% "
                  f"of the bare loop (target >= 90%: {verdict}{', tiny CPU models: not a measurement' if args.tiny else ''})",
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps({"results": results, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                      for k, v in vars(args).items()}}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
