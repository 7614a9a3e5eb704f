"""Benchmark: synthetic phantom generation and the threshold segmenter.

Prints the time of one default phantom (generation only, best of ``--repeat``), of writing it
(CT + multilabel masks + layout), of the threshold segmenter on it, and of
``generate_phantoms`` for ``--n`` cases (generation + writing + manifest), in each orientation.

    python benchmarks/phantoms.py [--n 16] [--repeat 5] [--shape 96 80 84] [--spacing 4 4 5]

Target (the demo makes 8–16 phantoms and runs everything on them in under 3 minutes on
2 cores): one default phantom well under 1 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from volprobe.segmentation.phantoms.generate import (
    DEFAULT_SHAPE, DEFAULT_SPACING, ORIENTATIONS, generate_phantoms, make_phantom, segment_phantom_by_threshold,
    write_phantom,
)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=3, default=DEFAULT_SHAPE)
    ap.add_argument("--spacing", type=float, nargs=3, default=DEFAULT_SPACING)
    args = ap.parse_args()
    grid = dict(shape=tuple(args.shape), spacing=tuple(args.spacing))
    make_phantom(0, **grid)  # warm imports

    voxels = args.shape[0] * args.shape[1] * args.shape[2]
    print(f"grid {tuple(args.shape)} voxels at {tuple(args.spacing)} mm ({voxels / 1e6:.2f} M voxels)")
    for orientation in ORIENTATIONS:
        t_make = best_of(args.repeat, lambda: make_phantom(1, orientation=orientation, **grid))
        ph = make_phantom(1, orientation=orientation, **grid)
        t_seg = best_of(args.repeat, lambda: segment_phantom_by_threshold(ph.volume))
        with tempfile.TemporaryDirectory() as tmp:
            t_write = best_of(args.repeat, lambda: write_phantom(ph, tmp, "case"))
        print(f"{orientation:8s} one phantom: make {t_make:.3f} s, write {t_write:.3f} s, "
              f"threshold segmenter {t_seg:.3f} s ({len(ph.layout)} structures)")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate_phantoms(tmp, args.n, seed=0, orientation="mixed", progress=False, **grid)
        total = time.perf_counter() - t
    print(f"generate_phantoms n={args.n} (mixed orientations, with writing + manifest): {total:.2f} s "
          f"({total / args.n:.3f} s per case)")


if __name__ == "__main__":
    main()
