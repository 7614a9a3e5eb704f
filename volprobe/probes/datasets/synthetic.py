"""Invented 3D-RAD-like CSV folders in the real layout, for tests, benchmarks and demos.

Nothing here is real data. The files follow the 3D-RAD release layout (see :mod:`.threedrad`) exactly (including
the swapped folder numbers of tasks 1 and 2), and the answers have structure a blind baseline can
learn, as in the real benchmark: each finding has its own prevalence (Task 4), and Tasks 5-6 come from
per-patient finding histories that persist from scan to scan (a Markov chain), so the history in a
Task 6 question predicts the answer.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from volprobe.probes.datasets.threedrad import CTRATE_LABELS

HEADER = ["Task", "Subtask", "VolumeName", "Question", "Answer", "QuestionType", "AnswerChoice",
          "Choice A", "Choice B", "Choice C", "Choice D"]
#: Release folder names: folder numbers 1 and 2 are swapped relative to the paper.
FOLDERS = {1: "Task2_Anomaly_Detection", 2: "Task1_Image_Observation", 3: "Task3_Medical_Computation",
           4: "Task4_Existence_Detection", 5: "Task5_Static_Temporal_Diagnosis",
           6: "Task6_Longitudinal_Temporal_Diagnosis"}
TEMPORAL_CHOICES = ["Refractory Lesion (Persistent or recurrent, now present)",
                    "Resolved Lesion (Previously present or recurrent, now absent)",
                    "New Lesion (Absent previously, now present)", "No Abnormality (Always absent)"]
#: Share of items per paper task (roughly the release's mix: the closed tasks dominate).
TASK_SHARE = {1: 0.08, 2: 0.08, 3: 0.06, 4: 0.36, 5: 0.21, 6: 0.21}
SCANS = "abcd"
NOTE = "(Note: 0 indicates absence, and 1 indicates presence.)"
#: Seed of the invented "population" (finding prevalences), shared by all splits; the split seed draws items.
WORLD_SEED = 20250

_T4_TEMPLATES = ["Is {l} visible in this CT volume?", "Does this chest CT show {l}?", "Can {l} be seen in this scan?"]
_T5_TEMPLATES = ["What is the status of {l} in this scan compared with earlier ones?",
                 "How has {l} changed by this scan?"]
_T6_TEMPLATES = ["Prior {l} states: {h}. {note} What is {l} now?",
                 "Earlier {l} findings: {h}. {note} What is the status of {l} in the current scan?"]
_LOBES = ["right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe"]


def _temporal_answer(history: list[int], now: int) -> int:
    """Index in TEMPORAL_CHOICES: refractory, resolved, new, no abnormality."""
    if now:
        return 0 if any(history) else 2
    return 1 if any(history) else 3


def _measurement(rng: np.random.Generator) -> str:
    kind = rng.integers(4)
    a, b = int(rng.integers(3, 60)), int(rng.integers(2, 40))
    return [f"{a} mm", f"{a}x{b} mm", f"{a / 10:.1f} cm", f"{a}mm"][kind]


def synthetic_rows(n_items: int, split: str = "test", seed: int = 0) -> dict[tuple[int, str], list[list[str]]]:
    """Rows per (paper task, subtask file stem), ``n_items`` in total (±1 per task from rounding)."""
    rng = np.random.default_rng(seed)
    labels = list(CTRATE_LABELS)
    temporal_labels = [lab for lab in labels if lab != "Medical material"]
    world = np.random.default_rng(WORLD_SEED)  # the same findings prevalence in every split
    prevalence = {lab: float(p) for lab, p in zip(labels, world.uniform(0.05, 0.5, len(labels)))}
    n_patients = max(1, n_items // 20)
    out: dict[tuple[int, str], list[list[str]]] = {}

    def add(task: int, stem: str, row: list[str]) -> None:
        out.setdefault((task, stem), []).append([str(FOLDERS[task][4]), "1", *row])

    def volume(patient: int, scan: str) -> str:
        return f"{split}_{patient}_{scan}_{int(rng.integers(1, 3))}.nii.gz"

    counts = {t: int(round(share * n_items)) for t, share in TASK_SHARE.items()}
    def findings() -> str:
        chosen = rng.choice(len(labels), size=int(rng.integers(1, 4)), replace=False)
        return "; ".join(f"{labels[i].lower()} in the {_LOBES[rng.integers(len(_LOBES))]}" for i in chosen)

    for task, stem, question in ((1, "Abnormality", "What abnormality is present in this CT?"),
                                 (2, "Lung", "Describe the lung parenchyma, please.")):
        for _ in range(counts[task]):
            add(task, stem, [volume(int(rng.integers(n_patients)), "a"), question, findings().capitalize() + ".",
                             "Open", *["-"] * 5])
    for _ in range(counts[3]):
        stem = ["Diameter", "Size", "Thickness"][rng.integers(3)]
        lobe = _LOBES[rng.integers(len(_LOBES))]
        add(3, stem, [volume(int(rng.integers(n_patients)), "a"),
                      f"What is the {stem.lower()} of the lesion in the {lobe}?", _measurement(rng), "Open",
                      *["-"] * 5])
    for _ in range(counts[4]):
        lab = labels[rng.integers(len(labels))]
        yes = bool(rng.random() < prevalence[lab])
        q = _T4_TEMPLATES[rng.integers(len(_T4_TEMPLATES))].format(l=lab.lower())
        add(4, lab.replace(" ", "_"), [volume(int(rng.integers(n_patients)), "a"), q, "Yes" if yes else "No",
                                       "Close", "A" if yes else "B", "Yes", "No", "-", "-"])
    for task in (5, 6):
        for _ in range(counts[task]):
            lab = temporal_labels[rng.integers(len(temporal_labels))]
            position = int(rng.integers(1, len(SCANS)))  # the current scan is b, c or d
            state, states = int(rng.random() < prevalence[lab]), []
            for _scan in range(position + 1):  # persistent states: flip with probability 0.2
                states.append(state)
                state = state if rng.random() > 0.2 else 1 - state
            history, now = states[:-1], states[-1]
            answer = _temporal_answer(history, now)
            templates = _T5_TEMPLATES if task == 5 else _T6_TEMPLATES
            q = templates[rng.integers(len(templates))].format(l=lab.lower(), h=str(history), note=NOTE)
            add(task, SCANS[position], [volume(int(rng.integers(n_patients)), SCANS[position]), q,
                                        TEMPORAL_CHOICES[answer], "Close", "ABCD"[answer], *TEMPORAL_CHOICES])
    return out


def write_synthetic_3drad(root: str | Path, n_items: int, split: str = "test", seed: int = 0) -> Path:
    """Write an invented split ``ROOT/<split>/Task*/<subtask>.csv``; returns ``ROOT``."""
    root = Path(root)
    for (task, stem), rows in sorted(synthetic_rows(n_items, split, seed).items()):
        folder = root / split / FOLDERS[task]
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{stem}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows(rows)
    return root
