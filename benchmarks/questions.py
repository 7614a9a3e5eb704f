"""Benchmark: spatial items per second from precomputed relation graphs of 1,000 phantom-sized cases.

20 real phantom graphs (``make_phantom`` + ``case_relations``: the graph and its counterfactual graphs
under the three flips, 96×80×84 voxels, ~67 structures, ~2,200 pairs each) are replicated to 1,000
cases in memory, each replica (and each of its counterfactual graphs) with its centroids and extents
shifted by a seeded jitter (so relations differ between replicas). Building them is not timed. Timed:
:func:`generate_questions` (selection, text, gold, three counterfactual golds on the transformed graphs
with the name-swap tag, prior tagging over all cases), then separately writing the JSON Lines file
and manifest.

    python benchmarks/questions.py [--cases 1000] [--per-case 100] [--base 20] [--profile]

Target on the 2-core machine: ≥ 50,000 items/s.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from volprobe.controls.counterfactuals import case_relations
from volprobe.probes.questions import QuestionSettings, case_from_graph, generate_questions, write_question_set
from volprobe.segmentation.phantoms.generate import case_seed, make_phantom


def jittered(graph, case: str, rng: np.random.Generator, sd_mm: float = 4.0):
    """A copy of ``graph`` named ``case`` whose structures are shifted by N(0, sd_mm) per axis, its
    counterfactual graphs jittered the same way (each on its own draws: timing, not anatomy)."""
    structures = {}
    for name, s in graph.structures.items():
        d = rng.normal(0.0, sd_mm, 3)
        structures[name] = replace(s, centroid_mm=tuple(np.add(s.centroid_mm, d).tolist()),
                                   min_mm=tuple(np.add(s.min_mm, d).tolist()), max_mm=tuple(np.add(s.max_mm, d).tolist()))
    counterfactuals = {t: replace(cf, graph=jittered(cf.graph, case, rng, sd_mm))
                       for t, cf in graph.counterfactuals.items()}
    return replace(graph, case=case, structures=structures, counterfactuals=counterfactuals)


def make_cases(n_cases: int, n_base: int, seed: int = 0):
    base = [case_relations(make_phantom(case_seed(seed, i)).labels, None, case=f"base{i:03d}") for i in range(n_base)]
    rng = np.random.default_rng(seed)
    return [case_from_graph(jittered(base[i % n_base], f"case{i:04d}", rng)) for i in range(n_cases)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--per-case", type=int, default=100)
    ap.add_argument("--base", type=int, default=20, help="real phantom graphs to replicate")
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile of one run")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cases = make_cases(args.cases, args.base)
    print(f"{len(cases)} cases from {args.base} phantom graphs "
          f"({np.mean([len(c.graph.structures) for c in cases]):.0f} structures, "
          f"{np.mean([len(c.graph.pairs) for c in cases]):.0f} pairs each) built in {time.perf_counter() - t0:.1f} s "
          "(not timed)")
    settings = QuestionSettings(per_case=args.per_case, seed=0)
    generate_questions(cases[: args.base], settings)  # warm-up: imports, caches
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        qs = generate_questions(cases, settings)
        times.append(time.perf_counter() - t0)
    best = min(times)
    n = len(qs.items)
    print(f"generate_questions: {n:,} items in {best:.2f} s (best of 3; runs {', '.join(f'{t:.2f}' for t in times)}) "
          f"→ {n / best:,.0f} items/s (target ≥ 50,000)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_question_set(qs, Path(tmp) / "items.jsonl")
        w = time.perf_counter() - t0
    print(f"writing items.jsonl + manifest: {w:.2f} s → {n / w:,.0f} items/s; "
          f"generation + writing {n / (best + w):,.0f} items/s")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        generate_questions(cases, settings)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
