"""A stand-in for TotalSegmentator's weights: a tiny network that labels voxels by HU range.

It lets the *real* ``totalsegmentator()`` call (its reorientation, resampling, nnU-Net
preprocessing, sliding-window inference, export and NIfTI writing) run offline, on
any machine, with no downloaded weights: :func:`write_standin_weights` writes a
complete nnU-Net v2 model folder (``dataset.json``, ``plans.json``,
``fold_0/checkpoint_final.pth``) whose plans name :class:`HUThresholdNet`.
The labels it produces mean nothing anatomically; each voxel gets the class of
the first HU rule its intensity falls in. Used by the tests and usable for demos.

Imports torch at module level: import this module lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

#: Default rules (low HU inclusive, high HU exclusive, TotalSegmentator class name).
DEFAULT_RULES: tuple[tuple[float, float, str], ...] = (
    (200.0, 1e9, "vertebrae_L1"),   # bone-like
    (-50.0, 200.0, "liver"),        # soft tissue
)

#: Where TotalSegmentator looks for the ``--fast`` model (relative to its weights folder).
FAST_FOLDER = "Dataset297_TotalSegmentator_total_3mm_1559subj"
FAST_TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
PLANS_NAME = "nnUNetPlans"


class HUThresholdNet(nn.Module):
    """Per-voxel classifier: logit ``gain`` for the class whose HU range holds the voxel.

    nnU-Net hands it CT intensities normalised as ``(clip(hu, p0.5, p99.5) - mean) / std``;
    the plans written by :func:`write_standin_weights` set mean 0 and std 1, so the input is HU.
    """

    def __init__(self, input_channels: int, num_classes: int, hu_rules: Sequence[Sequence[float]] = (),
                 deep_supervision: bool = False, **_: object) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.hu_rules = [(float(lo), float(hi), int(c)) for lo, hi, c in hu_rules]
        bad = [c for _, _, c in self.hu_rules if not 0 < c < self.num_classes]
        if bad:
            raise ValueError(f"class ids {bad} outside 1..{self.num_classes - 1}")
        self.gain = nn.Parameter(torch.tensor(10.0))  # stored in the checkpoint's state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hu = x[:, 0]
        logits = torch.zeros((x.shape[0], self.num_classes, *x.shape[2:]), dtype=x.dtype, device=x.device)
        logits[:, 0] = 0.5 * self.gain / 10.0
        taken = torch.zeros_like(hu, dtype=torch.bool)
        for lo, hi, c in self.hu_rules:
            inside = (hu >= lo) & (hu < hi) & ~taken
            logits[:, c] = logits[:, c] + self.gain * inside.to(x.dtype)
            taken |= inside
        return logits


def _plans(patch_size: Sequence[int], spacing_mm: float, arch_kwargs: dict) -> dict:
    resample_kwargs = {"order": 1, "order_z": 0, "force_separate_z": None}
    configuration = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 1,
        "patch_size": list(patch_size),
        "median_image_size_in_voxels": list(patch_size),
        "spacing": [spacing_mm] * 3,
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, **resample_kwargs},
        "resampling_fn_seg_kwargs": {"is_seg": True, **resample_kwargs},
        "resampling_fn_probabilities_kwargs": {"is_seg": False, **resample_kwargs},
        "batch_dice": False,
        "architecture": {
            "network_class_name": f"{__name__}.HUThresholdNet",
            "arch_kwargs": arch_kwargs,
            "_kw_requires_import": [],
        },
    }
    return {
        "dataset_name": FAST_FOLDER,
        "plans_name": PLANS_NAME,
        "original_median_spacing_after_transp": [spacing_mm] * 3,
        "original_median_shape_after_transp": list(patch_size),
        "image_reader_writer": "NibabelIOWithReorient",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": configuration},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        # mean 0, std 1: the network sees HU clipped to [-1024, 3071]
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 3071.0, "min": -1024.0, "mean": 0.0, "median": 0.0, "std": 1.0,
                  "percentile_00_5": -1024.0, "percentile_99_5": 3071.0}
        },
    }


def write_standin_weights(weights_root: str | Path, rules: Sequence[tuple[float, float, str]] = DEFAULT_RULES,
                          *, folder: str = FAST_FOLDER, trainer: str = FAST_TRAINER,
                          patch_size: Sequence[int] = (32, 64, 64), spacing_mm: float = 3.0) -> Path:
    """Write a stand-in nnU-Net model folder under ``weights_root/folder``; returns the model folder.

    Args:
        weights_root: what ``TOTALSEG_WEIGHTS_PATH`` will point to.
        rules: ``(low HU, high HU, class name)``; names from TotalSegmentator's ``total`` class map.
        folder, trainer: dataset folder and trainer name TotalSegmentator looks up (default: ``--fast``).
        patch_size: sliding-window patch (voxels); spacing_mm: the model's isotropic spacing.
    """
    from totalsegmentator.map_to_binary import class_map

    ids = {name: i for i, name in class_map["total"].items()}
    unknown = [name for _, _, name in rules if name not in ids]
    if unknown:
        raise ValueError(f"not TotalSegmentator 'total' class names: {unknown}")
    hu_rules = [[lo, hi, ids[name]] for lo, hi, name in rules]
    model_dir = Path(weights_root) / folder / f"{trainer}__{PLANS_NAME}__3d_fullres"
    (model_dir / "fold_0").mkdir(parents=True, exist_ok=True)
    labels = {"background": 0, **{name: i for i, name in sorted(class_map["total"].items())}}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 0, "file_ending": ".nii.gz",
               "name": folder, "description": "volprobe stand-in: labels voxels by HU range (not anatomy)"}
    (model_dir / "dataset.json").write_text(json.dumps(dataset, indent=2))
    arch_kwargs = {"hu_rules": hu_rules}
    (model_dir / "plans.json").write_text(json.dumps(_plans(patch_size, spacing_mm, arch_kwargs), indent=2))
    net = HUThresholdNet(1, len(labels), hu_rules)
    checkpoint = {
        "network_weights": net.state_dict(),
        "trainer_name": trainer,
        "init_args": {"configuration": "3d_fullres", "fold": 0, "plans": {}, "dataset_json": dataset},
        "inference_allowed_mirroring_axes": None,
    }
    torch.save(checkpoint, model_dir / "fold_0" / "checkpoint_final.pth")
    return model_dir
