"""Run TotalSegmentator (task ``total``) offline and safely, with a result cache.

What this adds to ``totalsegmentator.python_api.totalsegmentator``:

* **Weights first.** The weight folders the chosen configuration needs are worked out from the
  installed package (``--fast``: Dataset297; default: Dataset291..295; ``roi_subset``: also
  Dataset298, the model that finds the crop) and looked for in ``weights_dir``,
  ``$TOTALSEG_WEIGHTS_PATH``, ``$TOTALSEG_HOME_DIR/nnunet/results`` and
  ``~/.totalsegmentator/nnunet/results``. Missing ones raise :class:`WeightsMissingError` in
  well under a second, saying which, where, and how to install them or pass masks instead.
* **No network.** TotalSegmentator runs in a child process (``python -m
  volprobe.segmentation.totalseg.child JOB.json``) whose weights path is the checked folder, whose
  download function is replaced by a check, whose usage-statistics ping is disabled (a private
  ``config.json`` with ``send_usage_stats: false`` and the sender replaced by a no-op) and in
  which sockets can reach only this machine. It can neither download nor post anything.
* **Safe to call from anywhere.** nnU-Net starts ``spawn`` worker processes, which makes a
  script that calls it directly die ("Background workers died") unless the call sits under
  ``if __name__ == "__main__":``. The child process has that guard, so library callers,
  notebooks and tests need none.
* **Cache.** Results are stored under ``cache_dir`` by the CT's :attr:`Volume.content_hash`,
  the settings, the TotalSegmentator version and a fingerprint of the weights, so a second call
  on the same CT is a file copy.

Output: ``OUT_DIR/<name>.nii.gz``, one multilabel map on the CT's exact grid (label names in its
NIfTI header extension, as TotalSegmentator writes them; read it with
:func:`volprobe.segmentation.masks.load_masks`), and ``<name>.nii.gz.manifest.json`` beside it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from volprobe.errors import VolprobeError, VolprobeWarning, WeightsMissingError
from volprobe.manifest import write_manifest
from volprobe.segmentation.totalseg.child import EXIT_WEIGHTS_MISSING, TASK
from volprobe.segmentation.volume import ITK_SUFFIXES, NIFTI_SUFFIXES, Volume, describe_grid, load_volume, save_nifti

PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
#: Model TotalSegmentator runs first to find the crop when ``roi_subset`` is given (python_api).
ROI_CROP_TASK_ID = 298
ROI_CROP_TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
DEVICE_PATTERN = re.compile(r"^(cpu|cuda|cuda:\d+)$")


class TotalSegmentatorError(VolprobeError):
    """TotalSegmentator itself failed, or its output does not fit the CT."""


@dataclass(frozen=True)
class WeightFolder:
    """One nnU-Net model folder TotalSegmentator needs, as ``<root>/<folder>/<trainer>__nnUNetPlans__3d_fullres``."""

    task_id: int
    folder: str
    trainer: str

    def checkpoint(self, root: Path) -> Path:
        return root / self.folder / f"{self.trainer}__{PLANS}__{CONFIGURATION}" / "fold_0" / "checkpoint_final.pth"


@dataclass(frozen=True)
class SegmentSettings:
    """What to run: ``fast`` (3 mm model), ``device`` ('cpu', 'cuda', 'cuda:N'), optional ROI subset (class names)."""

    fast: bool = False
    device: str = "cpu"
    roi_subset: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.match(self.device):
            raise VolprobeError(f"device {self.device!r} not understood; use cpu, cuda or cuda:N (N = GPU index)")
        if self.roi_subset is not None:
            rois = tuple(sorted(set(self.roi_subset)))
            if not rois:
                raise VolprobeError("roi_subset is empty; leave it out to segment all 117 structures")
            _check_class_names(rois)
            object.__setattr__(self, "roi_subset", rois)

    @property
    def totalseg_device(self) -> str:
        """TotalSegmentator's spelling: 'cpu', 'gpu' or 'gpu:N'."""
        return self.device.replace("cuda", "gpu")

    def required_weights(self) -> list[WeightFolder]:
        return required_weights(self.fast, self.roi_subset)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["roi_subset"] = list(self.roi_subset) if self.roi_subset else None
        return {"task": TASK, **d}


def _check_class_names(names: Sequence[str]) -> None:
    from totalsegmentator.map_to_binary import class_map

    known = list(class_map[TASK].values())
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, known, n=3)
            hints.append(f"{n!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise VolprobeError(f"not TotalSegmentator '{TASK}' class names: {'; '.join(hints)}. "
                            "See totalsegmentator.map_to_binary.class_map['total'] for the 117 names")


def required_weights(fast: bool = False, roi_subset: Sequence[str] | None = None) -> list[WeightFolder]:
    """The model folders TotalSegmentator 'total' will load for these settings (from the installed package)."""
    from totalsegmentator.map_tasks_config import TASK_CONFIGS, TASK_ID_WEIGHTS_CONFIGS
    from totalsegmentator.map_to_binary import class_map_5_parts, map_taskid_to_partname_ct

    mode = TASK_CONFIGS[TASK]["sub_modes"]["fast" if fast else "default"]
    ids = mode["task_id"] if isinstance(mode["task_id"], list) else [mode["task_id"]]
    if roi_subset and len(ids) > 1:  # the 1.5 mm model runs only the parts holding a requested structure
        ids = [i for i in ids if set(class_map_5_parts[map_taskid_to_partname_ct[i]].values()) & set(roi_subset)]
    folders = [WeightFolder(i, TASK_ID_WEIGHTS_CONFIGS[i]["foldername"], mode["trainer"]) for i in ids]
    if roi_subset:
        folders.append(WeightFolder(ROI_CROP_TASK_ID, TASK_ID_WEIGHTS_CONFIGS[ROI_CROP_TASK_ID]["foldername"],
                                    ROI_CROP_TRAINER))
    return folders


def weight_locations(weights_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """Where weights are looked for, first match wins: (how the place was named, path)."""
    places: list[tuple[str, Path]] = []
    if weights_dir is not None:
        places.append(("weights_dir (--weights-dir)", Path(weights_dir)))
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        places.append(("$TOTALSEG_WEIGHTS_PATH", Path(os.environ["TOTALSEG_WEIGHTS_PATH"])))
    if os.environ.get("TOTALSEG_HOME_DIR"):
        places.append(("$TOTALSEG_HOME_DIR/nnunet/results", Path(os.environ["TOTALSEG_HOME_DIR"]) / "nnunet" / "results"))
    home = Path("/tmp") if str(Path.home()) == "/" else Path.home()  # as TotalSegmentator does
    places.append(("~/.totalsegmentator/nnunet/results", home / ".totalsegmentator" / "nnunet" / "results"))
    seen, unique = set(), []
    for label, path in places:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append((label, path))
    return unique


def locate_weights(required: Sequence[WeightFolder], weights_dir: str | Path | None = None) -> Path:
    """The first place holding every required model folder with its checkpoint; else :class:`WeightsMissingError`."""
    report = []
    for label, root in weight_locations(weights_dir):
        if not root.is_dir():
            report.append(f"  {label} = {root}: no such folder")
            continue
        missing = [w for w in required if not w.checkpoint(root).is_file()]
        if not missing:
            return root
        what = []
        for w in missing:
            if (root / w.folder).is_dir():
                what.append(f"{w.folder} is incomplete (no {w.checkpoint(root).relative_to(root / w.folder)})")
            else:
                what.append(f"{w.folder} is missing")
        report.append(f"  {label} = {root}: " + "; ".join(what))
    raise WeightsMissingError(_missing_weights_message(required, report))


def _missing_weights_message(required: Sequence[WeightFolder], report: list[str]) -> str:
    fast = any(w.task_id == 297 for w in required)
    download_task = "total_fast" if fast else "total"
    needed = "\n".join(f"  {w.folder}/{w.trainer}__{PLANS}__{CONFIGURATION}/fold_0/checkpoint_final.pth"
                       for w in required)
    return (
        f"TotalSegmentator weights are not installed for this configuration "
        f"({'--fast, 3 mm' if fast else 'default, 1.5 mm'} model). Needed:\n{needed}\n"
        f"Looked in:\n" + "\n".join(report) + "\n"
        f"To install: on a machine with internet run `totalseg_download_weights -t {download_task}` "
        "(it fills ~/.totalsegmentator/nnunet/results), then copy those folders to this machine into one of "
        "the places above, or point TOTALSEG_WEIGHTS_PATH (or --weights-dir) at the folder holding them; "
        "TOTALSEG_HOME_DIR=DIR means DIR/nnunet/results. volprobe never downloads weights.\n"
        "Or skip segmentation and use masks you already have: "
        "`probe relations CT --masks MASKS` (a TotalSegmentator multilabel .nii.gz or a folder of <name>.nii.gz)."
    )


def check_device(device: str) -> None:
    """Raise when a CUDA device is asked for but torch cannot see it (TotalSegmentator would silently use the CPU)."""
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise VolprobeError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu "
                            "(minutes per CT; --fast helps) or run on a machine with a GPU")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise VolprobeError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) visible (cuda:0.."
                            f"cuda:{torch.cuda.device_count() - 1})")


# -- cache ----------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$VOLPROBE_CACHE_DIR/totalsegmentator``, else ``$XDG_CACHE_HOME`` or ``~/.cache`` + ``volprobe/totalsegmentator``."""
    if os.environ.get("VOLPROBE_CACHE_DIR"):
        return Path(os.environ["VOLPROBE_CACHE_DIR"]) / "totalsegmentator"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "volprobe" / "totalsegmentator"


def weights_fingerprint(root: Path, required: Sequence[WeightFolder], chunk: int = 1 << 20) -> str:
    """Cheap content fingerprint of the model folders: plans, dataset and the checkpoint's size, head and tail."""
    h = hashlib.sha256()
    for w in required:
        model = w.checkpoint(root).parents[1]
        for name in ("plans.json", "dataset.json"):
            f = model / name
            h.update(f.read_bytes() if f.is_file() else b"-")
        ckpt = w.checkpoint(root)
        size = ckpt.stat().st_size
        h.update(f"{w.folder}|{size}|".encode())
        with open(ckpt, "rb") as fh:
            h.update(fh.read(chunk))
            fh.seek(max(0, size - chunk))
            h.update(fh.read(chunk))
    return h.hexdigest()


def cache_key(content_hash: str, settings: SegmentSettings, fingerprint: str) -> str:
    """Key of one result: CT content, settings (not the device), TotalSegmentator version, weights."""
    from importlib.metadata import version

    record = {"ct": content_hash, "task": TASK, "fast": settings.fast,
              "roi_subset": list(settings.roi_subset or []), "totalsegmentator": version("TotalSegmentator"),
              "weights": fingerprint}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


# -- running ----------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentResult:
    """One CT of :func:`segment_many`: where its masks went, whether they came from the cache, or why it failed."""

    ct: str
    output: Path | None = None
    cached: bool = False
    structures: int = 0
    error: str | None = None


def output_name(ct: str | Path | Volume) -> str:
    """File stem for a CT's masks: ``ct.nii.gz`` → ``ct``; a DICOM folder → its name; in-memory → ``ct_<hash>``."""
    if isinstance(ct, Volume):
        if ct.source and Path(ct.source).exists():
            return output_name(ct.source)
        return f"ct_{ct.content_hash[:12]}"
    p = Path(ct)
    low = p.name.lower()
    for suffix in (*NIFTI_SUFFIXES[::-1], *ITK_SUFFIXES):
        if low.endswith(suffix):
            return p.name[: -len(suffix)]
    return p.name if p.is_dir() else p.stem


def run_totalsegmentator(ct_path_or_volume: str | Path | Volume, out_dir: str | Path, fast: bool = False,
                         device: str = "cpu", roi_subset: Sequence[str] | None = None,
                         weights_dir: str | Path | None = None, cache_dir: str | Path | None = None, *,
                         name: str | None = None, series: str | None = None,
                         timeout_s: float | None = None) -> Path:
    """Segment one CT with TotalSegmentator 'total'; returns ``OUT_DIR/<name>.nii.gz`` (manifest beside it).

    Args:
        ct_path_or_volume: a CT file/DICOM folder (read with :func:`load_volume`) or a :class:`Volume`.
        out_dir: folder for ``<name>.nii.gz`` (multilabel, on the CT's grid) and its manifest.
        fast: the 3 mm model (one pass; Dataset297) instead of the 1.5 mm one (five passes; Dataset291-295).
        device: 'cpu', 'cuda' or 'cuda:N'.
        roi_subset: only these TotalSegmentator class names (needs Dataset298 for the crop as well).
        weights_dir: folder holding the Dataset* folders; looked in before the TotalSegmentator defaults.
        cache_dir: result cache (default :func:`default_cache_dir`).
        name: output stem (default :func:`output_name`); series: DICOM series to read.
        timeout_s: give up (TotalSegmentatorError) when TotalSegmentator runs longer than this.

    Raises:
        WeightsMissingError: within a second, before the CT is even read.
        VolprobeError: bad device or class names; TotalSegmentatorError when it fails.
    """
    return _segment_one(ct_path_or_volume, Path(out_dir), SegmentSettings(fast, device, _as_tuple(roi_subset)),
                        weights_dir, cache_dir, name=name, series=series, timeout_s=timeout_s).output  # type: ignore[return-value]


def _as_tuple(roi_subset: Sequence[str] | None) -> tuple[str, ...] | None:
    if isinstance(roi_subset, str):
        return (roi_subset,)
    return tuple(roi_subset) if roi_subset else None


def _prepare(settings: SegmentSettings, weights_dir) -> tuple[list[WeightFolder], Path]:
    required = settings.required_weights()
    root = locate_weights(required, weights_dir)
    check_device(settings.device)
    return required, root


def _segment_one(ct, out_dir: Path, settings: SegmentSettings, weights_dir, cache_dir, *, name=None, series=None,
                 timeout_s=None, prepared: tuple[list[WeightFolder], Path] | None = None) -> SegmentResult:
    required, root = prepared or _prepare(settings, weights_dir)
    vol = ct if isinstance(ct, Volume) else load_volume(ct, series=series)
    out = out_dir / f"{name or output_name(ct)}.nii.gz"
    if vol.source and Path(vol.source).resolve() == out.resolve():
        raise VolprobeError(f"the masks would overwrite the CT itself ({out}); choose another --out folder")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fingerprint = weights_fingerprint(root, required)
    key = cache_key(vol.content_hash, settings, fingerprint)
    cached = cache / f"{key}.nii.gz"
    hit = cached.is_file()
    started = time.perf_counter()
    if not hit:
        _segment_into_cache(vol, settings, root, required, cache, key, timeout_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    structures = _check_output(out, vol)
    write_manifest(
        out, "segment",
        inputs=[vol.source] if vol.source and Path(vol.source).exists() else [],
        input_hashes={"ct_content_sha256": vol.content_hash},
        parameters={**settings.as_dict(), "weights_dir": str(root)},
        extra={
            "output": str(out), "ct_grid": vol.describe_grid(), "structures": structures,
            "totalsegmentator": {"weights_folders": [w.folder for w in required], "weights_fingerprint": fingerprint,
                                 "usage_stats": "disabled", "network": "blocked"},
            "cache": {"hit": hit, "key": key, "path": str(cached)},
            "runtime_s": round(time.perf_counter() - started, 3),
        },
    )
    return SegmentResult(str(ct if not isinstance(ct, Volume) else vol.source or out.name), out, hit, len(structures))


def _check_output(out: Path, vol: Volume) -> list[str]:
    """Names of the structures found; raises when the output is not on the CT's grid."""
    import warnings

    import nibabel as nib
    import numpy as np

    from volprobe.segmentation.masks import read_label_names_from_header, totalsegmentator_class_map

    img = nib.load(str(out))
    if not vol.same_grid(img.shape, img.affine):
        raise TotalSegmentatorError(f"TotalSegmentator's output {out} is not on the CT's grid:\n"
                                    f"  output: {describe_grid(img.shape, img.affine)}\n  CT:     {vol.describe_grid()}")
    ids = np.flatnonzero(np.bincount(np.asarray(img.dataobj).ravel().astype(np.int64)))
    names = read_label_names_from_header(img) or totalsegmentator_class_map(TASK)
    found = [names.get(int(i), f"label_{int(i)}") for i in ids if i != 0]
    if not found:
        warnings.warn(f"{out}: TotalSegmentator found no structure in {vol.source or 'the CT'} "
                      "(not a CT, or a field of view without any of its 117 structures?)", VolprobeWarning, stacklevel=4)
    return found


def _segment_into_cache(vol: Volume, settings: SegmentSettings, root: Path, required: Sequence[WeightFolder],
                        cache: Path, key: str, timeout_s: float | None) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    home = cache / "totalseg_home"
    with tempfile.TemporaryDirectory(prefix="volprobe_totalseg_") as tmp:
        tmp_dir = Path(tmp)
        job = {
            "input": str(save_nifti(vol, tmp_dir / "ct.nii")),  # RAS+ NIfTI of exactly this Volume
            "output": str(tmp_dir / "seg.nii.gz"),
            "fast": settings.fast, "device": settings.totalseg_device,
            "roi_subset": list(settings.roi_subset) if settings.roi_subset else None,
            "weights_root": str(root), "home": str(home), "folders": [w.folder for w in required],
        }
        _run_job(job, tmp_dir, cache / f"{key}.log", timeout_s)
        partial = cache / f"{key}.{os.getpid()}.partial.nii.gz"  # two processes may finish the same CT
        shutil.copyfile(job["output"], partial)
        os.replace(partial, cache / f"{key}.nii.gz")
    (cache / f"{key}.json").write_text(json.dumps({"ct_content_sha256": vol.content_hash, "source": vol.source,
                                                   **settings.as_dict(), "weights_dir": str(root)}, indent=2))


def _run_job(job: dict, tmp_dir: Path, log_path: Path, timeout_s: float | None) -> None:
    """Run TotalSegmentator in a child process (see module docstring); its output goes to ``log_path``."""
    job_file = tmp_dir / "job.json"
    job_file.write_text(json.dumps(job))
    package_parent = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "TOTALSEG_WEIGHTS_PATH": job["weights_root"], "TOTALSEG_HOME_DIR": job["home"],
           "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "volprobe.segmentation.totalseg.child", str(job_file)]
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise TotalSegmentatorError(f"TotalSegmentator ran longer than {timeout_s:g} s and was stopped; "
                                        f"log: {log_path}") from exc
    if proc.returncode == 0:
        return
    tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-15:])
    if proc.returncode == EXIT_WEIGHTS_MISSING:
        raise WeightsMissingError(tail)
    raise TotalSegmentatorError(f"TotalSegmentator failed (exit status {proc.returncode}). Last lines of its "
                                f"log:\n{tail}\nFull log: {log_path}")


def segment_many(cts: Sequence[str | Path], out_dir: str | Path, *, fast: bool = False, device: str = "cpu",
                 roi_subset: Sequence[str] | None = None, weights_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, series: str | None = None,
                 timeout_s: float | None = None, progress: bool = True) -> list[SegmentResult]:
    """Segment several CTs into ``out_dir`` with a progress bar; a failing CT is reported, the others go on.

    Weights and device are checked once, before any CT is read. Output names are the CT stems,
    prefixed with the parent folder's name where two CTs share a stem.
    """
    from tqdm.auto import tqdm

    settings = SegmentSettings(fast, device, _as_tuple(roi_subset))
    prepared = _prepare(settings, weights_dir)
    names = unique_output_names(cts)
    results = []
    bar = tqdm(list(zip(cts, names)), desc="TotalSegmentator", unit="CT", disable=not progress)
    for ct, name in bar:
        bar.set_postfix_str(str(name))
        try:
            results.append(_segment_one(ct, Path(out_dir), settings, weights_dir, cache_dir, name=name,
                                        series=series, timeout_s=timeout_s, prepared=prepared))
        except (VolprobeError, FileNotFoundError) as exc:
            results.append(SegmentResult(str(ct), error=str(exc)))
    return results


def unique_output_names(cts: Sequence[str | Path]) -> list[str]:
    """:func:`output_name` of each CT, made unique with the parent folder's name, then a counter."""
    stems = [output_name(c) for c in cts]
    names = [f"{Path(ct).resolve().parent.name}_{stem}" if stems.count(stem) > 1 else stem
             for ct, stem in zip(cts, stems)]
    seen: dict[str, int] = {}
    for n, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[n] = f"{name}_{seen[name]}"
    return names
