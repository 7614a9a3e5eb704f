"""``probe controls apply``: what a model sees under a control, written as an image (and the masks moved with it).

:func:`apply_control_to_files` reads a volume, applies a control exactly as a run does (the same
:meth:`~volprobe.controls.Control.apply`, the same seed for the same case) and writes the result; with
masks, it also writes the label map transformed by :meth:`~volprobe.controls.Control.transform_labels`
(nearest neighbour, with its structure names in the NIfTI header as TotalSegmentator writes them), which
is what every counterfactual gold answer is computed from, so a reader can look at both and check the
golds. Controls whose input depends on the item (``single_slice:evidence``) need that item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volprobe.controls.base import Control, ControlContext, ControlError, get_control
from volprobe.items import Item


@dataclass
class ControlledFiles:
    """What :func:`apply_control_to_files` wrote."""

    control: str
    volume: Path
    labels: Path | None
    case: str
    params: dict[str, Any] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.control} applied to case {self.case}: wrote {self.volume}"
                 + (f" and {self.labels}" if self.labels else "")]
        if self.params:
            lines.append("  parameters: " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        if self.renamed:
            lines.append(f"  {len(self.renamed)} structures renamed as a reader of the transformed image names them "
                         f"(e.g. {', '.join(f'{a} -> {b}' for a, b in list(self.renamed.items())[:3])})")
        return "\n".join(lines)


def labels_output_path(out: str | Path) -> Path:
    """Where the transformed masks go by default: ``OUT`` with ``_seg`` before its suffix
    (``mirrored.nii.gz`` → ``mirrored_seg.nii.gz``), as ``probe phantom`` names masks."""
    out = Path(out)
    for suffix in (".nii.gz", ".nii"):
        if out.name.lower().endswith(suffix):
            return out.with_name(out.name[: -len(suffix)] + "_seg" + suffix)
    return out.with_name(out.name + "_seg.nii.gz")


def apply_control_to_files(volume_path: str | Path, spec: str | Control, out: str | Path, *,
                           labels: str | Path | None = None, labels_out: str | Path | None = None,
                           item: Item | None = None, case: str | None = None, seed: int = 0,
                           resample_masks: bool = False, command: str = "probe controls apply") -> ControlledFiles:
    """Write the volume under ``spec`` to ``out`` (NIfTI, or an ITK format by its suffix) and, with ``labels``,
    the masks transformed the same way to ``labels_out`` (default :func:`labels_output_path`); a manifest
    beside each.

    ``case``: the case id the control's seed derives from (the item's case when an item is given; default the
    volume's file name without suffix, as ``probe phantom`` and ``probe questions`` name cases); ``seed``: the
    run seed.

    Raises:
        ControlError: the control gives no image (``text_only``), needs other cases (``swapped_volume``),
            depends on the item and none is given, or ``labels`` is given for a control that does not move
            the anatomy (its gold is the item's own answer).
        VolumeReadError, MaskError: unreadable inputs, masks on another grid.
    """
    from volprobe.manifest import write_manifest
    from volprobe.segmentation.masks import load_masks, save_label_map
    from volprobe.segmentation.relations.graph import case_from_path
    from volprobe.segmentation.volume import load_volume, save_volume

    control = get_control(spec) if isinstance(spec, str) else spec
    if not control.needs_volume:
        raise ControlError(f"{control.label} gives the model no image; there is nothing to write")
    if labels is not None and not control.changes_geometry:
        raise ControlError(f"--labels: {control.label} does not move the anatomy (its gold is the item's own answer, "
                           "from the original masks); masks are written only for controls that change geometry")
    if item is not None and case is not None and case != item.case_key:
        raise ControlError(f"case {case!r} is not the case of item {item.id!r} ({item.case_key!r})")
    case = (item.case_key if item is not None else case) or case_from_path(str(volume_path))
    ctx = ControlContext(seed=seed)
    control.check(ctx)
    volume = load_volume(volume_path)
    label_map = load_masks(labels, volume, resample=resample_masks) if labels is not None else None
    cin = control.apply_to_case(volume, case, ctx) if item is None else control.apply(volume, item, ctx)
    if cin.volume is None:
        raise ControlError(f"{control.label} gave no image for case {case}")
    parameters = {"control": control.label, "case": case, "seed": seed, "item": item.id if item else None,
                  "control_params": cin.params}
    save_volume(cin.volume, out)
    write_manifest(out, command, inputs=[volume_path], seed=seed, parameters=parameters)
    result = ControlledFiles(control.label, Path(out), None, case, dict(cin.params))
    if label_map is not None:
        moved = control.transform_labels(label_map)
        result.labels = Path(labels_out) if labels_out is not None else labels_output_path(out)
        result.renamed = {label_map.names[i]: n for i, n in moved.names.items()
                          if label_map.names.get(i) != n and i in label_map.present()}
        save_label_map(moved, result.labels)
        write_manifest(result.labels, command, inputs=[volume_path, labels], seed=seed,
                       parameters={**parameters, "renamed": result.renamed})
    return result

