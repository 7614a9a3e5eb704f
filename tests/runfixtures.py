"""Helpers shared by the run-engine tests: tiny NIfTI cases, items, a recording adapter.

Not a test module; imported by test_engine.py, test_resume.py and benchmarks/engine_overhead.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from volprobe.items import Item
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared, register_model
from volprobe.segmentation.volume import Volume, save_nifti

SHAPE = (24, 20, 16)


def phantom_array(shift: int = 0) -> np.ndarray:
    """Air background, a soft-tissue body, a 'left' blob at low i and a 'right' blob at high i.

    ``shift`` moves the blobs along k so different cases have different content.
    """
    arr = np.full(SHAPE, -1000, dtype=np.int16)
    arr[2:22, 2:18, 1:15] = 40
    arr[3:7, 6:10, 3 + shift:7 + shift] = 300
    arr[17:21, 8:12, 6 + shift:11 + shift] = 600
    arr[10:12, 2:18, :] += np.arange(SHAPE[2], dtype=np.int16)  # every axial slice distinct
    return arr


def ras_affine(spacing=(1.5, 1.2, 2.0)) -> np.ndarray:
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = (-20.0, -15.0, 30.0)
    return aff


def write_cases(folder: Path, patients: Sequence[str] = ("p1", "p1", "p2", "p3")) -> dict[str, tuple[Path, str]]:
    """One NIfTI per case ``c0, c1, ...`` (patients as given); returns case -> (path, patient)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for n, patient in enumerate(patients):
        path = folder / f"c{n}.nii.gz"
        save_nifti(Volume(phantom_array(shift=n % 4), ras_affine()), path)
        cases[f"c{n}"] = (path, patient)
    return cases


def make_items(cases: dict[str, tuple[Path, str]], per_case: int = 3) -> list[Item]:
    """Per case: a laterality item (mirror_lr gold given), an SI item (axes ['si'], no counterfactual)
    and further yes/no items about nothing in particular (axes [])."""
    items = []
    for case, (path, patient) in cases.items():
        common = dict(case=case, volume_path=str(path), patient=patient, task="spatial")
        items.append(Item(id=f"{case}-lat", question="Which side is the bright blob on?", answer="right",
                          options=["left", "right"], subtask="laterality", evidence={
                              "axes": ["lr"], "axial_slices": [6, 10], "structures": ["blob"]},
                          counterfactual={"mirror_lr": "left"}, metadata={"prior_fixed": False}, **common))
        items.append(Item(id=f"{case}-si", question="Is the dim blob above the bright one?", answer="no",
                          answer_type="yes_no", options=["yes", "no"], subtask="craniocaudal",
                          evidence={"axes": ["si"], "axial_slices": [3, 10]},
                          metadata={"category": "si-order", "prior_fixed": True}, **common))
        for k in range(per_case - 2):
            items.append(Item(id=f"{case}-x{k}", question=f"Is there a body? ({k})", answer="yes",
                              answer_type="yes_no", options=["yes", "no"], evidence={"axes": []}, **common))
    return items


@register_model("test-recorder")
class RecordingAdapter(ModelAdapter):
    """Answers the gold letter of the original item (so correctness shows gold transformations),
    remembers every prepare (the content hash of the volume, which is also ``Prepared.input_hash``,
    so a record's ``input_hash`` shows which volume the item got) and the size of every batch;
    can fail on chosen items and sleep per item.

    Options: ``fail_items`` (ids whose generate raises), ``fail_prepare_shape`` (a shape whose
    prepare raises), ``sleep_s`` (seconds per generated item), ``uses_image``,
    ``refuse_without_image`` (flag answers to no-image inputs as refusals, as CT-CHAT-like adapters do).
    """

    no_image_mode = "images=None"
    accepted_options = frozenset({"fail_items", "fail_prepare_shape", "sleep_s", "uses_image", "refuse_without_image"})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prepared: list[str | None] = []  # content hash of each volume prepared (None: no image)
        self.batches: list[int] = []
        self.loads = 0
        self.uses_image = bool(self.options.get("uses_image", True))

    def load(self) -> None:
        self.loads += 1

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {"do_sample": False, "max_new_tokens": 4}

    def prepare(self, volume) -> Prepared:
        if volume is not None and volume.shape == tuple(self.options.get("fail_prepare_shape", ())):
            raise RuntimeError("cannot prepare this shape")
        h = None if volume is None else volume.content_hash
        self.prepared.append(h)
        return Prepared(data=h, input_hash=h or "none", no_image=volume is None)

    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        self.batches.append(len(batch))
        fail = set(self.options.get("fail_items", ()))
        if fail & {item.id for _, item in batch}:
            raise RuntimeError("model crashed on " + ", ".join(sorted(fail & {item.id for _, item in batch})))
        time.sleep(float(self.options.get("sleep_s", 0.0)) * len(batch))
        refuse = bool(self.options.get("refuse_without_image", False))
        return [Generation(f"{item.answer_letter}. {item.answer}", refused=refuse and prepared.no_image)
                for prepared, item in batch]
