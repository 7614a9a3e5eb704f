"""Benchmark: encode once, ask many; Ray workers against one process; a worker killed mid-run.

(a) **Reuse.** An M3D-LaMed-style model with random weights (~50M parameters by default: a Phi-3 language
    model, hidden 512 × 12 layers, and a ViT 384 wide × 4 layers over the 2,048 patches of a 32 × 256 × 256
    volume, as M3D's vision tower is a ViT over those patches; 256 image tokens) answers ``--questions``
    questions per volume on ``--cases`` phantom CTs through the run engine, with the image prefix reused
    (default) and recomputed (``reuse=false``): items/s of each, the speed-up, and whether the answers are
    identical (float32, CPU). The gain is what encoding and the image prefill cost against decoding:
    ``--vision-layers 0`` (patch embedding only, nothing to encode) shows the floor.
(b) **Ray.** The same items through ``probe run``'s engine with ``--ray`` (2 local workers) and in one
    process: time of each, the ratio, and whether the records are identical (timings aside).
(c) **Fault.** The Ray run again with a worker that kills its own process at its first answer: the run
    completes, the unit is sent again, and the records are identical to the one-process run.

    python benchmarks/engine_scale.py [--cases 4] [--questions 12] [--hidden 512 --layers 12]
                                      [--vision-dim 384 --vision-layers 4]
                                      [--device cpu|cuda --dtype fp32|bf16] [--skip-ray]

On a GPU machine: ``--device cuda --dtype bf16 --hidden 3072 --layers 32 --vision-dim 768 --vision-layers 12``
is M3D-LaMed-Phi-3-4B's size.
Targets: reuse ≥ 3× faster with 10+ questions per volume, identical answers; Ray records identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the M3D-style architecture used by the tests (tinymodels)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from volprobe.items import Item  # noqa: E402
from volprobe.probes.models.base import load_model  # noqa: E402
from volprobe.probes.run.engine import run  # noqa: E402

WORDS = ["liver", "spleen", "kidney", "aorta", "heart", "lung", "stomach", "colon", "pancreas", "duodenum"]


def build_model(folder: Path, hidden: int, layers: int, vision_dim: int, vision_layers: int) -> int:
    """Write an M3D-style model of the given size with random weights; returns its parameter count."""
    from tinymodels.lamed import LAMED_TINY, write_lamed

    sizes = {**LAMED_TINY, "hidden_size": hidden, "intermediate_size": 3 * hidden, "num_hidden_layers": layers,
             "num_attention_heads": max(1, hidden // 64), "num_key_value_heads": max(1, hidden // 64),
             "vision_dim": vision_dim, "vision_layers": vision_layers}
    folder.mkdir(parents=True, exist_ok=True)
    write_lamed(folder, sizes=sizes)
    from safetensors import safe_open

    count = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(f, "pt") as fh:
            count += sum(fh.get_slice(k).get_shape().numel() if hasattr(fh.get_slice(k).get_shape(), "numel")
                         else int(np.prod(fh.get_slice(k).get_shape())) for k in fh.keys())
    return count


def make_items(folder: Path, cases: int, questions: int) -> list[Item]:
    """Phantom CTs and ``questions`` yes/no questions about each (varied wording and length)."""
    from volprobe.segmentation.phantoms import generate_phantoms

    written = generate_phantoms(folder, cases, seed=5)
    items = []
    for c in written:
        ct = folder / c["files"]["ct"]["path"]
        for q in range(questions):
            a, b = WORDS[q % len(WORDS)], WORDS[(3 * q + 1) % len(WORDS)]
            items.append(Item(id=f"{c['case_id']}/q{q}", question=f"Is the {a} {['above', 'to the left of', 'behind'][q % 3]} the {b}?",
                              answer="yes", options=["yes", "no"], answer_type="yes_no", case=c["case_id"],
                              patient=c["case_id"], volume_path=str(ct)))
    return items


def _records(folder: Path) -> dict:
    out = {}
    for line in open(folder / "records.jsonl"):
        d = json.loads(line)
        d.pop("latency_s")
        out[(d["control"], d["item_id"])] = d
    return out


def reuse_benchmark(args, model_dir: Path, items: list[Item], work: Path) -> None:
    times, answers = {}, {}
    for reuse in (False, True):
        model = load_model(f"m3d:{model_dir}", device=args.device, dtype=args.dtype, max_new_tokens=args.new_tokens,
                           reuse=reuse)
        model.load()
        t0 = time.perf_counter()
        run(items, model, ["full"], work / f"reuse-{reuse}", batch_size=1, progress=False)
        times[reuse] = time.perf_counter() - t0
        answers[reuse] = {k: r["raw_output"] for k, r in _records(work / f"reuse-{reuse}").items()}
    n = len(items)
    print(f"(a) reuse: {n} items ({args.cases} volumes x {args.questions} questions), device {args.device}, "
          f"dtype {args.dtype}, {args.new_tokens} new tokens")
    print(f"    recompute every question: {n / times[False]:.2f} items/s ({times[False]:.1f} s)")
    print(f"    encode once, ask many:    {n / times[True]:.2f} items/s ({times[True]:.1f} s)")
    speedup = times[False] / times[True]
    same = answers[True] == answers[False]
    print(f"    speed-up {speedup:.2f}x (target >= 3x: {'met' if speedup >= 3 else 'NOT met'}); answers identical: "
          f"{same} ({sum(a == b for a, b in zip(answers[True].values(), answers[False].values()))}/{n})")


def ray_benchmark(args, items: list[Item], work: Path) -> None:
    import ray

    from volprobe.probes.run.distributed import RayOptions

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), str(ROOT),
                                                              os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        from volprobe.controls import STANDARD_CONTROLS

        controls = list(STANDARD_CONTROLS)
        t0 = time.perf_counter()
        run(items, load_model("oracle"), controls, work / "one", progress=False)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        run(items, load_model("oracle"), controls, work / "ray", progress=False, ray=RayOptions(workers=2))
        spread = time.perf_counter() - t0
        same = _records(work / "one") == _records(work / "ray")
        print(f"(b) ray: oracle, {len(items)} items x {len(controls)} controls; one process {one:.1f} s, 2 Ray "
              f"workers {spread:.1f} s (ratio {one / spread:.2f}); records identical: {same}")
        from scale_fault import CrashAtFirstAnswer  # a module the Ray workers can import

        marker = work / "crashed"
        t0 = time.perf_counter()
        summary = run(items, CrashAtFirstAnswer(marker=str(marker)), controls, work / "fault", progress=False,
                      ray=RayOptions(workers=2))
        faulted = time.perf_counter() - t0
        session = json.loads((work / "fault" / "manifest.json").read_text())["run"]["sessions"][-1]["ray"]
        reference = {k: v for k, v in _records(work / "one").items()}
        got = _records(work / "fault")
        same = {k: (v["parsed"], v["correct"]) for k, v in got.items()} == \
            {k: (v["parsed"], v["correct"]) for k, v in reference.items()}
        print(f"(c) fault: a worker killed itself at its first answer ({marker.exists()}); the run finished in "
              f"{faulted:.1f} s with {summary.written} records, {session['units_resent']} unit(s) sent again, "
              f"answers identical to the one-process oracle run: {same}")
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--vision-dim", type=int, default=384, help="width of the ViT over the 2,048 patches")
    ap.add_argument("--vision-layers", type=int, default=4, help="ViT layers (0: patch embedding only)")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = build_model(work / "model", args.hidden, args.layers, args.vision_dim, args.vision_layers)
        print(f"model: M3D-style, language model hidden {args.hidden} x {args.layers} layers, ViT "
              f"{args.vision_dim} x {args.vision_layers} layers over 2,048 patches, {params / 1e6:.1f}M parameters")
        items = make_items(work / "cases", args.cases, args.questions)
        reuse_benchmark(args, work / "model", items, work)
        if not args.skip_ray:
            ray_benchmark(args, items, work)


if __name__ == "__main__":
    main()
