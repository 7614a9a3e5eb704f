"""Every seed and stable hash in volprobe, derived from the run's seed (one module, so that a reader can
see how each random choice is made and a rerun makes it again).

All functions are deterministic across processes, machines and Python versions (none uses the salted
built-in ``hash``). Each serves one purpose; they are kept distinct because changing one would change
outputs that earlier runs and papers quote:

- :func:`derive_seed` (SHA-256, 63 bits): seeds of controls (shuffled slices, swapped volumes) and of the
  seeded reference models, from (run seed, control or model, case or item);
- :func:`stable_hash` (BLAKE2b, 64 bits): keys and orders in question generation (item id digests, the
  order in which a family visits its structure keys), where it runs millions of times;
- :func:`mix64` (SplitMix64's finaliser): a fresh 64-bit draw from bits that are already a hash;
- :func:`seed_sequence` (CRC-32 of names): NumPy generator seeds for the statistics (bootstrap and
  sign-flip draws per group, synthetic records), so each group's draws do not depend on the others;
- :func:`seeded_random`: a standard-library generator seeded by text (the oracle's guesses).
"""

from __future__ import annotations

import hashlib
import random
import zlib
from typing import Any

_MASK64 = (1 << 64) - 1


def derive_seed(run_seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and any parts (their text)."""
    h = hashlib.sha256(str(int(run_seed)).encode())
    for p in parts:
        h.update(b"\x00" + str(p).encode())
    return int.from_bytes(h.digest()[:8], "big") >> 1


def stable_hash(*parts: object) -> int:
    """64-bit hash of the parts' text (stable across processes, unlike ``hash``)."""
    text = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a 64-bit hash of ``x`` (draws independent of other uses of the same bits)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def seed_sequence(seed: int, *keys: str) -> list[int]:
    """``[seed, crc32(key), ...]``: the entropy of a ``numpy.random.default_rng`` for one named stream."""
    return [int(seed)] + [zlib.crc32(k.encode()) for k in keys]


def seeded_random(seed: int, *parts: Any) -> random.Random:
    """A ``random.Random`` seeded by the text ``"seed|part|part..."``."""
    return random.Random("|".join(map(str, (seed, *parts))))
