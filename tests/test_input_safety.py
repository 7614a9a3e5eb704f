"""Nothing lost, nothing silently wrong: one test per way careless input used to lose data, give a silently
wrong result or print a traceback (outputs over inputs, per-item volumes, string options, corrupt files,
errored records on resume, judged and score imports, environment faults, rules that differ between commands,
masks in another axis order, phantom folders, misleading causes).

The table of bad inputs per command is test_bad_inputs.py; these tests check the behaviour behind it.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from clifixtures import assert_one_error_line, check_ok, corrupt_gzip_crc, invoke, make_workspace, tree_hashes
from runfixtures import RecordingAdapter, make_items, write_cases
from volprobe.errors import FormatError, MaskError, VolprobeError, VolumeReadError
from volprobe.items import Item, read_items, write_items
from volprobe.probes.run.engine import run
from volprobe.records import read_records
from volprobe.segmentation.masks import load_masks
from volprobe.segmentation.volume import Volume, load_volume, save_nifti


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("ws"))


@pytest.fixture
def fresh(ws, tmp_path):
    """A private copy of the workspace (for tests that change it)."""
    root = tmp_path / "copy"
    shutil.copytree(ws["root"], root, symlinks=True)
    return {k: root / v.relative_to(ws["root"]) for k, v in ws.items()}


# -- 1. an output path equal to an input ---------------------------------------------------------------

def test_outputs_never_overwrite_inputs_and_a_refused_report_leaves_the_run_mergeable(fresh, tmp_path):
    before = tree_hashes(fresh["root"])
    assert_one_error_line(invoke("relations", fresh["ct"], "--masks", fresh["seg"], "--out", fresh["ct"]), 2,
                          "is also an input")
    assert_one_error_line(invoke("score", fresh["records"], "--out", fresh["records"]), 2, "is also an input")
    assert_one_error_line(invoke("report", fresh["run"], "--out", fresh["run"], "--no-figures"), 2,
                          "is also an input")
    assert_one_error_line(invoke("report", fresh["records"], "--out", fresh["run"], "--no-figures"), 2,
                          "run folder")
    assert tree_hashes(fresh["root"]) == before
    check_ok(invoke("merge", fresh["run"], "--out", tmp_path / "merged"))  # the run's manifest survived
    check_ok(invoke("run", "--model", "random", "--items", fresh["items"], "--control", "full", "--control",
                    "text_only", "--out", fresh["run"], "--no-progress"))  # and it still resumes
    # a report into a subfolder of the run is the report's own; rerunning it is fine
    for _ in range(2):
        check_ok(invoke("report", fresh["run"], "--out", fresh["run"] / "report", "--no-figures",
                        "--n-perm", 50))
    check_ok(invoke("score", fresh["records"], "--out", fresh["run"] / "score" / "summary.json"))


# -- 2. the volume is the item's, not the case's first item's -------------------------------------------

def test_items_of_one_case_naming_different_volumes_are_an_error_naming_both(tmp_path):
    cases = write_cases(tmp_path / "cases", patients=("p1", "p2"))
    items = make_items(cases, per_case=3)
    other = str(cases["c1"][0])
    items[1] = Item(**{**items[1].__dict__, "volume_path": other})  # c0's second item names c1's CT
    with pytest.raises(VolprobeError, match="c0") as err:
        run(items, RecordingAdapter(), ["full"], tmp_path / "run", progress=False)
    assert str(cases["c0"][0]) in str(err.value) and other in str(err.value)
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_a_bad_first_path_does_not_stand_for_the_case(tmp_path):
    cases = write_cases(tmp_path / "cases", patients=("p1", "p2"))
    items = make_items(cases, per_case=3)
    items[0] = Item(**{**items[0].__dict__, "volume_path": str(tmp_path / "gone.nii.gz")})
    with pytest.raises(VolprobeError, match="gone.nii.gz"):
        run(items, RecordingAdapter(), ["full"], tmp_path / "run", progress=False)


def test_the_same_volume_written_two_ways_is_one_volume(tmp_path):
    cases = write_cases(tmp_path / "cases", patients=("p1", "p2"))
    items = make_items(cases, per_case=2)
    path = cases["c0"][0]
    items[1] = Item(**{**items[1].__dict__, "volume_path": os.path.relpath(path, tmp_path)})  # relative to base
    summary = run(items, RecordingAdapter(), ["full"], tmp_path / "run", progress=False, base_dir=tmp_path)
    assert summary.errors == 0 and summary.volumes_loaded == 2


# -- 3. options given as one string -------------------------------------------------------------------

def test_options_as_a_string_are_refused_at_the_door(ws, tmp_path):
    line = assert_one_error_line(invoke("run", "--model", "random", "--items", ws["items_options_str"], "--control",
                                        "full", "--out", tmp_path / "run"), 2, "options")
    assert "options_str.jsonl:1" in line and "list" in line
    assert not (tmp_path / "run").exists()
    with pytest.raises(FormatError, match="options must be a list"):
        Item(id="a", question="q", answer="y", answer_type="yes_no", options="yes,no")


# -- 4. corrupt inputs ----------------------------------------------------------------------------------

def test_a_gzip_crc_failure_is_an_error_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    arr = np.where(rng.random((40, 42, 48)) < 0.5, -1000, 40).astype(np.int16)
    good = save_nifti(Volume(arr, np.eye(4)), tmp_path / "ct.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(corrupt_gzip_crc(good.read_bytes()))
    with pytest.raises(VolumeReadError, match=r"bad.nii.gz.*CRC"):
        load_volume(bad)
    labels = save_nifti(Volume((arr > 0).astype(np.uint8), np.eye(4)), tmp_path / "seg.nii.gz")
    badseg = tmp_path / "badseg.nii.gz"
    badseg.write_bytes(corrupt_gzip_crc(labels.read_bytes()))
    with pytest.raises(MaskError, match=r"badseg.nii.gz.*CRC"):
        load_masks(badseg)


def _dicom_series(tmp_path: Path, name: str) -> tuple[Path, Volume]:
    """A DICOM series written by SimpleITK (whose GDCM writer sets the C locale; put back afterwards, so
    later tests still write UTF-8 by default)."""
    import locale

    from test_volume_io import make_ct, write_dicom_series

    ct = make_ct()
    img = sitk.ReadImage(str(save_nifti(ct, tmp_path / f"{name}.nii.gz")))
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        return write_dicom_series(img, tmp_path / name), ct
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_a_dicom_series_with_a_truncated_last_slice_is_an_error_naming_it(tmp_path):
    folder, ct = _dicom_series(tmp_path, "dcm")
    assert load_volume(folder).shape == ct.shape
    last = sorted(folder.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:-2])
    with pytest.raises(VolumeReadError, match=last.name) as err:
        load_volume(folder)
    assert "unreadable" in str(err.value) or "truncated" in str(err.value)


# -- 5. errored records are retried on resume -----------------------------------------------------------

def test_errored_records_retry_on_resume_and_a_run_with_errors_exits_3(tmp_path):
    cases = write_cases(tmp_path / "cases", patients=("p1", "p2"))
    items = make_items(cases, per_case=2)
    hidden = cases["c1"][0].with_name("away.nii.gz")
    cases["c1"][0].rename(hidden)
    items_path = tmp_path / "items.jsonl"
    write_items(items, items_path)
    args = ["run", "--model", "test-recorder", "--items", items_path, "--control", "full", "--out", tmp_path / "run",
            "--no-progress"]
    first = invoke(*args)
    assert first.exit_code == 3, first.output
    assert "2 records ended in an error" in first.stderr and "rerun" in first.stderr
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert sum(r.error is not None for r in records) == 2
    kept = invoke(*args, "--no-retry-errors")  # the old behaviour: errors stay
    assert kept.exit_code == 3 and "0 records written now" in kept.output
    hidden.rename(cases["c1"][0])
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "retried 2" in second.output
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert len(records) == 4 and all(r.error is None for r in records)
    assert len({r.key for r in records}) == 4
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["run"]["sessions"][-1]["retried"] == 2


# -- 6. judged and score imports ------------------------------------------------------------------------

def test_judged_imports_refuse_duplicates_blanks_and_text_cells(ws, tmp_path):
    out = tmp_path / "j.jsonl"
    line = assert_one_error_line(invoke("import", "judged", ws["judged_dup"], "--items", ws["cts_items"], "--out",
                                        out), 2, "judged_dup.csv:4:")
    assert "line 2" in line and "--dedupe" in line
    check_ok(invoke("import", "judged", ws["judged_dup"], "--items", ws["cts_items"], "--out", out, "--dedupe",
                    "first"))
    assert len(read_records(out)) == 2 * 2  # two rows kept, two models
    assert_one_error_line(invoke("import", "judged", ws["judged_blank"], "--items", ws["cts_items"], "--out", out),
                          2, "column 'M3D-LaMed' is blank")
    assert_one_error_line(invoke("import", "judged", ws["judged_text"], "--items", ws["cts_items"], "--out", out),
                          2, "column 'RadFM' holds 'n/a'")
    assert_one_error_line(invoke("import", "judged", ws["judged"], "--out", out, "--threshold", 2), 2,
                          "--threshold")


def test_score_refuses_the_same_file_twice_and_duplicate_records(ws):
    assert_one_error_line(invoke("score", ws["records"], ws["records"]), 2, "given twice")
    assert_one_error_line(invoke("score", ws["records"], ws["records_copy"]), 2, "more than once")


# -- 7. environment faults and bad options: one line, no traceback ------------------------------------

@pytest.mark.parametrize("args, phrase", [
    (["report", "{run}", "--out", "{out}", "--alpha", "2"], "--alpha"),
    (["power", "--items", "100", "--discordance", "0.2", "--alpha", "-1"], "--alpha"),
    (["power", "--items", "100000000000", "--discordance", "0.2"], "--items"),
    (["phantom", "--out", "{out}", "--shape", "4000", "4000", "4000"], "memory"),
    (["run", "--model", "random", "--items", "{items_chance7}", "--control", "full", "--out", "{out}"], "chance"),
    (["--bogus"], "No such option '--bogus'"),
    (["--bogus", "report"], "No such option '--bogus'"),
    (["bogus"], "No such command 'bogus'"),
])
def test_option_and_item_errors_are_one_line(ws, tmp_path, args, phrase):
    values = {k: str(v) for k, v in ws.items()} | {"out": str(tmp_path / "out")}
    assert_one_error_line(invoke(*[a.format(**values) for a in args]), 2, phrase)


def _gz(path: Path, to: Path) -> Path:
    to.write_bytes(gzip.compress(path.read_bytes()))
    return to


def test_compressed_json_lines_are_read_transparently(ws, tmp_path):
    items_gz = _gz(ws["items"], tmp_path / "items.jsonl.gz")
    records_gz = _gz(ws["records"], tmp_path / "records.jsonl.gz")
    check_ok(invoke("run", "--model", "random", "--items", items_gz, "--control", "full", "--out", tmp_path / "run",
                    "--no-progress"))
    assert len(read_records(tmp_path / "run" / "records.jsonl")) == len(read_items(ws["items"]))
    plain, packed = invoke("score", ws["records"]), invoke("score", records_gz)
    check_ok(packed)
    assert packed.stdout == plain.stdout
    check_ok(invoke("report", records_gz, "--out", tmp_path / "rep", "--no-figures", "--n-perm", 50))
    check_ok(invoke("baseline", "fit", "--items", items_gz, "--kind", "majority", "--out", tmp_path / "b.json"))
    check_ok(invoke("import", "ctspatialvqa", _gz(ws["qa"], tmp_path / "qa.jsonl.gz"), "--out", tmp_path / "q.jsonl"))


@pytest.mark.parametrize("command", ["run", "score", "report", "import predictions", "baseline fit"])
def test_latin1_json_lines_name_the_line(ws, tmp_path, command):
    args = {"run": ["run", "--model", "random", "--items", ws["items_latin1"], "--control", "full", "--out",
                    tmp_path / "o"],
            "score": ["score", ws["records_latin1"]],
            "report": ["report", ws["records_latin1"], "--out", tmp_path / "o"],
            "import predictions": ["import", "predictions", ws["preds_latin1"], "--items", ws["cts_items"],
                                   "--model", "m", "--out", tmp_path / "o"],
            "baseline fit": ["baseline", "fit", "--items", ws["items_latin1"], "--kind", "majority", "--out",
                             tmp_path / "o"]}[command]
    line = assert_one_error_line(invoke(*args), 2, "not UTF-8")
    assert "0xe9" in line or "0xf4" in line


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_and_keeps_the_earlier_output(ws, tmp_path, monkeypatch):
    """Simulated by making fsync fail with ENOSPC (as a full disk reports on flush): the earlier summary
    and items must be intact, and no temporary file is left behind."""
    out = tmp_path / "summary.json"
    check_ok(invoke("score", ws["records"], "--out", out))
    items_out = tmp_path / "items.jsonl"
    check_ok(invoke("import", "ctspatialvqa", ws["qa"], "--out", items_out))
    before = tree_hashes(tmp_path)
    monkeypatch.setattr(os, "fsync", _enospc)
    line = assert_one_error_line(invoke("score", ws["records"], "--out", out), 2, "no space left")
    assert "summary.json" in line and "free" in line
    assert_one_error_line(invoke("import", "ctspatialvqa", ws["qa"], "--out", items_out), 2, "no space left")
    assert tree_hashes(tmp_path) == before


def test_a_full_disk_during_a_run_is_one_line_and_keeps_earlier_records(ws, tmp_path, monkeypatch):
    """The run appends and fsyncs per batch; when the disk fills (simulated: the 3rd fsync fails with ENOSPC)
    it stops with one line, the records written before stay, and the same command then finishes the run."""
    run_dir = tmp_path / "run"
    args = ["run", "--model", "random", "--items", ws["items"], "--control", "full", "--out", run_dir,
            "--no-progress", "--batch-size", 2]
    calls = []
    real_fsync = os.fsync

    def fsync_until_full(fd):
        calls.append(fd)
        if len(calls) >= 3:
            _enospc()
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync_until_full)
        assert_one_error_line(invoke(*args), 2, "no space left")
    written = read_records(run_dir / "records.jsonl")
    assert 0 < len(written) < len(read_items(ws["items"]))
    check_ok(invoke(*args))
    done = read_records(run_dir / "records.jsonl")
    assert len(done) == len(read_items(ws["items"])) and [r.to_dict() for r in done[:len(written)]] == [
        r.to_dict() for r in written]


def test_a_read_only_folder_is_one_line(ws, tmp_path, monkeypatch):
    """Simulated by refusing every open for writing inside the folder (root ignores chmod)."""
    import builtins

    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(ro)) and any(m in mode for m in "wax+"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    line = assert_one_error_line(invoke("score", ws["records"], "--out", ro / "s.json"), 2, "permission denied")
    assert "another --out" in line
    line = assert_one_error_line(invoke("import", "ctspatialvqa", ws["qa"], "--out", ro / "items.jsonl"), 2,
                                 "permission denied")


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


def test_a_real_full_disk_and_read_only_mount(ws, tmp_path):
    """The same faults from a real file system: a 64 KiB tmpfs filled up, then remounted read-only
    (needs root and mount; skipped elsewhere)."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "64k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mnt / "items.jsonl"
        check_ok(invoke("import", "ctspatialvqa", ws["qa"], "--out", out))
        kept = out.read_bytes()
        (mnt / "filler").write_bytes(b"\0" * (64 * 1024 - 4 * 4096 - len(kept)))
        big = ws["items"]  # several times larger than the space left
        assert_one_error_line(invoke("baseline", "eval", "--baseline", ws["baseline"], "--items", big, "--out",
                                     mnt / "b.jsonl"), 2, "no space left")
        assert not (mnt / "b.jsonl").exists()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        line = assert_one_error_line(invoke("import", "ctspatialvqa", ws["qa"], "--out", out), 2, "read-only")
        assert out.read_bytes() == kept and "another --out" in line
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- 8. what one command accepts the next never rejects ------------------------------------------------

@pytest.mark.parametrize("name, phrase", [("items_chance_half", "chance"), ("items_int_id", "id"),
                                          ("items_empty_id", "id"), ("items_chance7", "chance")])
def test_run_rejects_what_report_would_reject(ws, tmp_path, name, phrase):
    assert_one_error_line(invoke("run", "--model", "random", "--items", ws[name], "--control", "full", "--out",
                                 tmp_path / "run"), 2, phrase)


def test_records_a_run_writes_pass_every_later_command(ws, tmp_path):
    check_ok(invoke("score", ws["records"]))
    check_ok(invoke("merge", ws["run"], "--out", tmp_path / "m"))
    check_ok(invoke("report", tmp_path / "m", "--out", tmp_path / "rep", "--no-figures",
                    "--n-perm", 50))
    imported = tmp_path / "imported" / "records.jsonl"  # and so do the records an import writes
    check_ok(invoke("import", "predictions", ws["preds"], "--items", ws["cts_items"], "--model", "m", "--out",
                    imported))
    check_ok(invoke("score", imported))
    check_ok(invoke("report", imported, "--out", tmp_path / "rep2", "--no-figures",
                    "--n-perm", 50))


def test_empty_inputs_and_missing_masks_are_errors(ws, tmp_path):
    assert_one_error_line(invoke("score", ws["empty"]), 2, "no records")
    assert_one_error_line(invoke("report", ws["empty"], "--out", tmp_path / "r"), 2, "no records")
    assert_one_error_line(invoke("import", "ctspatialvqa", ws["empty"], "--out", tmp_path / "i.jsonl"), 2,
                          "no QA pairs")
    line = assert_one_error_line(invoke("questions", ws["nomask"], "--masks-suffix", "_seg.nii.gz", "--out",
                                        tmp_path / "q.jsonl", "--no-progress"), 2, "b.nii.gz")
    assert "b_seg.nii.gz" in line
    assert_one_error_line(invoke("report", ws["run"], "--out", tmp_path / "r", "--n-perm", -5), 2, "--n-perm")


# -- 9. masks on the same lattice in another axis order ------------------------------------------------

def _lps_ct_and_las_masks(tmp_path: Path, permute: bool = False):
    """A CT stored LPS (as volprobe reads DICOM) and its masks stored LAS (as TotalSegmentator writes them)."""
    rng = np.random.default_rng(3)
    shape = (20, 18, 16)
    lps = np.diag([-1.5, -1.2, 2.0, 1.0])
    lps[:3, 3] = (40.0, 30.0, -10.0)
    ct = Volume(rng.integers(-1000, 1000, size=shape).astype(np.int16), lps)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:6, 3:8, 2:9] = 1  # kidney_left... names from the class map below
    labels[12:18, 4:9, 5:12] = 2
    ct_path = save_nifti(ct, tmp_path / "ct.nii.gz")
    # LAS: flip the second array axis (P -> A) and move the origin to the other end of that axis
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, shape[1] - 1
    las_affine = lps @ flip
    las = labels[:, ::-1, :]
    if permute:  # and store the axes in another order (k, i, j)
        perm = np.zeros((4, 4))
        perm[0, 1] = perm[1, 2] = perm[2, 0] = perm[3, 3] = 1
        las_affine = las_affine @ perm
        las = np.transpose(las, (2, 0, 1))
    img = nib.Nifti1Image(np.ascontiguousarray(las), las_affine)
    seg_path = tmp_path / "seg.nii.gz"
    nib.save(img, seg_path)
    return ct_path, seg_path, ct, labels


@pytest.mark.parametrize("permute", [False, True])
def test_masks_on_the_same_lattice_are_reoriented_losslessly_and_recorded(tmp_path, permute):
    ct_path, seg_path, ct, labels = _lps_ct_and_las_masks(tmp_path, permute)
    label_map = load_masks(seg_path, ct)
    assert np.array_equal(label_map.labels, labels) and np.allclose(label_map.affine, ct.affine)
    assert label_map.reoriented == ("SLA" if permute else "LAS") + " -> LPS"
    out = tmp_path / "rel.json"
    check_ok(invoke("relations", ct_path, "--masks", seg_path, "--out", out, "--quiet"))
    manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert manifest["masks_reoriented"] == label_map.reoriented


def test_a_genuinely_different_grid_still_needs_resampling(tmp_path):
    ct_path, seg_path, ct, labels = _lps_ct_and_las_masks(tmp_path)
    img = nib.load(seg_path)
    shifted = img.affine.copy()
    shifted[:3, 3] += 0.6  # half a voxel: not the same lattice
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), tmp_path / "shifted.nii.gz")
    with pytest.raises(MaskError, match="not on the CT's voxel grid"):
        load_masks(tmp_path / "shifted.nii.gz", ct)


# -- 10. phantom folders are read back without flags ---------------------------------------------------

def test_questions_read_a_phantom_folder_by_its_manifest(ws, tmp_path):
    out = tmp_path / "items.jsonl"
    check_ok(invoke("questions", ws["ph"], "--out", out, "--per-case", 10, "--no-progress"))
    assert {it.case for it in read_items(out)} == {"phantom_s0_000", "phantom_s0_001"}


# -- 11. the cause named is the real one ---------------------------------------------------------------

def test_a_symlink_loop_is_reported_as_one(tmp_path):
    loop = tmp_path / "ct.nii.gz"
    loop.symlink_to(loop.name)
    with pytest.raises(VolumeReadError, match="symlink loop"):
        load_volume(loop)
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "a.dcm").symlink_to("b.dcm")
    (folder / "b.dcm").symlink_to("a.dcm")
    with pytest.raises(VolumeReadError, match=r"symlink loop.*a.dcm"):
        load_volume(folder)


def test_a_corrupt_middle_dicom_slice_is_named(tmp_path):
    folder, _ = _dicom_series(tmp_path, "dcm")
    middle = sorted(folder.iterdir())[3]
    middle.write_bytes(b"garbage" * 40)
    with pytest.raises(VolumeReadError, match=middle.name):
        load_volume(folder)


def test_uneven_spacing_names_the_files_around_the_gap(tmp_path):
    folder, _ = _dicom_series(tmp_path, "dcm")
    (folder / "slice003.dcm").unlink()  # a missing slice, nothing damaged
    with pytest.raises(VolumeReadError, match=r"unevenly spaced.*slice002.dcm.*slice004.dcm"):
        load_volume(folder)


def test_a_corrupt_mask_is_not_blamed_on_its_labels_and_no_hint_names_python_arguments(tmp_path, ws):
    with pytest.raises(MaskError) as err:
        load_masks(ws["seg_crc"])
    assert "CRC" in str(err.value) and "label ids" not in str(err.value)
    arr = np.zeros((6, 6, 6), dtype=np.uint8)
    arr[1:3, 1:3, 1:3] = 250
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "odd.nii.gz")
    with pytest.raises(MaskError, match="label ids") as err:
        load_masks(tmp_path / "odd.nii.gz")
    assert "task=" not in str(err.value)


def test_a_latin1_3drad_csv_names_the_line_of_the_bad_byte(ws, tmp_path):
    line = assert_one_error_line(invoke("import", "3drad", ws["3drad_latin1"], "--out", tmp_path / "i.jsonl"), 2,
                                 "Lung_nodule.csv:3:")
    assert "not UTF-8" in line
