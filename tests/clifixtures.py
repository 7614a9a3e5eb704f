"""A small workspace of every kind of input the `probe` commands read, and checks of how a command fails.

Not a test module; imported by test_bad_inputs.py and test_input_safety.py. The workspace is made with
the commands themselves (phantom → relations → questions → run → baseline; the benchmark fixtures
copied), so every file is what a user would have on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from volprobe.cli import main

TESTS = Path(__file__).resolve().parent
BENCHMARKS = TESTS / "data" / "benchmarks"


def invoke(*args, **kwargs):
    """``probe ARGS`` in process; stdout and stderr kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def check_ok(result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``root`` (symlinks as their target text)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + str(p.readlink())
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


TRACEBACK = re.compile(r"Traceback|^\s*File \"|^\w+(Error|Exception):", re.MULTILINE)
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar (long work shows one until the error)


def assert_one_error_line(result, code: int, phrase: str) -> str:
    """The command failed with exit status ``code``, printed exactly one ``error: ...`` line (the first on
    stderr) containing ``phrase``, and no traceback; returns that line."""
    stderr = result.stderr
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert not TRACEBACK.search(result.output), result.output
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not PROGRESS.search(ln)]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[0] == errors[0], stderr
    assert phrase.lower() in errors[0].lower(), (phrase, errors[0])
    return errors[0]


def latin1(text: str) -> bytes:
    return text.encode("latin-1")


def corrupt_gzip_crc(data: bytes) -> bytes:
    """``data`` (a gzip file) with one bit flipped so that it still inflates but its CRC no longer matches
    (the damage a bad disk or a broken copy does; readers that stop before the trailer never notice)."""
    for pos in range(len(data) - 9, 18, -1):
        for bit in (1, 2, 4, 8, 16, 32, 64, 128):
            b = bytearray(data)
            b[pos] ^= bit
            try:
                zlib.decompress(bytes(b), 31)
            except zlib.error as exc:
                if "incorrect data check" in str(exc):
                    return bytes(b)
                continue
    raise AssertionError("no silent corruption found")


def make_workspace(root: Path) -> dict[str, Path]:
    """Every input the commands read, good and bad, under ``root``; returns name → path."""
    root.mkdir(parents=True, exist_ok=True)
    ws: dict[str, Path] = {"root": root}
    ph = root / "ph"
    check_ok(invoke("phantom", "--out", ph, "--n", 2, "--shape", 36, 32, 36, "--spacing", 9, 9, 9))
    ws.update(ph=ph, ct=ph / "phantom_s0_000.nii.gz", seg=ph / "phantom_s0_000_seg.nii.gz",
              ct2=ph / "phantom_s0_001.nii.gz", seg2=ph / "phantom_s0_001_seg.nii.gz")
    ws["rel"] = root / "rel.json"
    check_ok(invoke("relations", ws["ct"], "--masks", ws["seg"], "--out", ws["rel"], "--quiet"))
    ws["items"] = root / "items.jsonl"
    check_ok(invoke("questions", ws["rel"], "--out", ws["items"], "--per-case", 12, "--no-progress"))
    ws["run"] = root / "runs" / "r"
    check_ok(invoke("run", "--model", "random", "--items", ws["items"], "--control", "full", "--control",
                    "text_only", "--out", ws["run"], "--no-progress"))
    ws["records"] = ws["run"] / "records.jsonl"
    ws["baseline"] = root / "baseline.json"
    check_ok(invoke("baseline", "fit", "--items", ws["items"], "--kind", "majority", "--min-count", 1,
                    "--out", ws["baseline"]))
    bench = root / "bench"
    shutil.copytree(BENCHMARKS, bench)
    ws["3drad"] = bench / "3drad"
    ws["3drad_csv"] = bench / "3drad" / "test" / "Task4_Existence_Detection" / "Lung_nodule.csv"
    cts = bench / "ctspatialvqa"
    ws.update(qa=cts / "qa.jsonl", cats=cts / "categories.json", preds=cts / "predictions.jsonl",
              judged=cts / "judged.csv")
    ws["cts_items"] = root / "cts_items.jsonl"
    check_ok(invoke("import", "ctspatialvqa", ws["qa"], "--categories", ws["cats"], "--out", ws["cts_items"]))
    _bad_inputs(ws)
    return ws


def _bad_inputs(ws: dict[str, Path]) -> None:
    root = ws["root"]
    bad = root / "bad"
    bad.mkdir()
    item_lines = ws["items"].read_text().splitlines()
    first = json.loads(item_lines[0])

    def item_file(name: str, **changes) -> Path:
        path = bad / name
        path.write_text(json.dumps({**first, **changes}) + "\n" + "\n".join(item_lines[1:]) + "\n")
        return path

    ws["items_options_str"] = item_file("options_str.jsonl", options="yes,no", answer="y")
    ws["items_chance7"] = item_file("chance7.jsonl", chance=7.0)
    ws["items_chance_half"] = item_file("chance_half.jsonl", chance="half")
    ws["items_int_id"] = item_file("int_id.jsonl", id=17)
    ws["items_empty_id"] = item_file("empty_id.jsonl", id="")
    ws["items_bad_answer"] = item_file("bad_answer.jsonl", answer="maybe")
    other_ct = str(Path("..") / ws["ct2"].relative_to(root))
    ws["items_two_volumes"] = item_file("two_volumes.jsonl", volume_path=other_ct)
    latin = item_lines[:2] + [json.dumps({**first, "id": "x-latin", "question": "Is the côté left?"},
                                         ensure_ascii=False)]
    ws["items_latin1"] = bad / "latin1.jsonl"
    ws["items_latin1"].write_bytes(latin1("\n".join(latin) + "\n"))
    ws["items_badgz"] = bad / "items.jsonl.gz"
    ws["items_badgz"].write_bytes(gzip.compress(ws["items"].read_bytes())[:-20])
    ws["empty"] = bad / "empty.jsonl"
    ws["empty"].write_text("")

    rec_lines = ws["records"].read_text().splitlines()
    rec = json.loads(rec_lines[0])
    ws["records_latin1"] = bad / "records_latin1.jsonl"
    ws["records_latin1"].write_bytes(latin1("\n".join(rec_lines[:3] + [json.dumps(
        {**rec, "item_id": "é-item"}, ensure_ascii=False)]) + "\n"))
    ws["records_badgz"] = bad / "records.jsonl.gz"
    ws["records_badgz"].write_bytes(corrupt_gzip_crc(gzip.compress(ws["records"].read_bytes())))
    ws["records_chance7"] = bad / "records_chance7.jsonl"
    ws["records_chance7"].write_text("\n".join([json.dumps({**rec, "chance": 7.0})] + rec_lines[1:]) + "\n")
    ws["records_copy"] = bad / "records_copy.jsonl"
    shutil.copy(ws["records"], ws["records_copy"])
    merged_like = bad / "run_half"
    merged_like.mkdir()
    shutil.copy(ws["run"] / "manifest.json", merged_like / "manifest.json")
    (merged_like / "records.jsonl").write_text(
        "\n".join([json.dumps({**rec, "chance": "half"})] + rec_lines[1:]) + "\n")
    ws["run_chance_half"] = merged_like
    clobbered = bad / "run_clobbered"
    clobbered.mkdir()
    shutil.copy(ws["records"], clobbered / "records.jsonl")
    (clobbered / "manifest.json").write_text(json.dumps({"command": "probe report", "runs": [
        {"path": "x", "files": ["x/records.jsonl"], "records": 1}]}))
    ws["run_clobbered"] = clobbered

    ws["ct_crc"] = bad / "ct_crc.nii.gz"
    ws["ct_crc"].write_bytes(corrupt_gzip_crc(ws["ct"].read_bytes()))
    ws["seg_crc"] = bad / "seg_crc.nii.gz"
    ws["seg_crc"].write_bytes(corrupt_gzip_crc(ws["seg"].read_bytes()))
    seg = nib.load(ws["seg"])
    shifted = seg.affine.copy()
    shifted[:3, 3] += 4.5  # half a voxel: another lattice
    ws["seg_shifted"] = bad / "seg_shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(seg.dataobj), shifted, seg.header), ws["seg_shifted"])
    ws["ct_cut"] = bad / "ct_cut.nii.gz"
    ws["ct_cut"].write_bytes(ws["ct"].read_bytes()[:-500])
    ws["ct_text"] = bad / "ct_text.nii.gz"
    ws["ct_text"].write_text("not an image\n")
    ws["ct_loop"] = bad / "ct_loop.nii.gz"
    ws["ct_loop"].symlink_to("ct_loop.nii.gz")
    nomask = bad / "nomask"
    nomask.mkdir()
    shutil.copy(ws["ct"], nomask / "a.nii.gz")
    shutil.copy(ws["seg"], nomask / "a_seg.nii.gz")
    shutil.copy(ws["ct2"], nomask / "b.nii.gz")
    ws["nomask"] = nomask
    ws["rel_latin1"] = bad / "rel_latin1.json"
    ws["rel_latin1"].write_bytes(latin1(ws["rel"].read_text()[:-3] + ', "note": "côté"}\n'))
    ws["rel_broken"] = bad / "rel_broken.json"
    ws["rel_broken"].write_text('{"format": "volprobe.relations/1", ')

    judged_lines = ws["judged"].read_text().splitlines()
    ws["judged_dup"] = bad / "judged_dup.csv"
    ws["judged_dup"].write_text("\n".join(judged_lines[:3] + [judged_lines[1]]) + "\n")
    ws["judged_blank"] = bad / "judged_blank.csv"
    ws["judged_blank"].write_text("question_id,M3D-LaMed,RadFM\nvalid_12_a_1.nii.gz::0,1,0.33\n"
                                  "valid_12_a_1.nii.gz::1,,0\n")
    ws["judged_text"] = bad / "judged_text.csv"
    ws["judged_text"].write_text("question_id,M3D-LaMed,RadFM\nvalid_12_a_1.nii.gz::0,1,0.33\n"
                                 "valid_12_a_1.nii.gz::1,0.66,n/a\nvalid_12_a_1.nii.gz::2,0.33,1\n")
    ws["judged_header_only"] = bad / "judged_header_only.csv"
    ws["judged_header_only"].write_text("question_id,M3D-LaMed\n")
    pred_lines = ws["preds"].read_text().splitlines()
    ws["preds_dup"] = bad / "preds_dup.jsonl"
    ws["preds_dup"].write_text("\n".join(pred_lines + pred_lines[:1]) + "\n")
    ws["preds_latin1"] = bad / "preds_latin1.jsonl"
    ws["preds_latin1"].write_bytes(latin1("\n".join(pred_lines[:2] + [json.dumps(
        {**json.loads(pred_lines[2]), "prediction": "côté gauche"}, ensure_ascii=False)]) + "\n"))
    qa_lines = ws["qa"].read_text().splitlines()
    ws["qa_latin1"] = bad / "qa_latin1.jsonl"
    ws["qa_latin1"].write_bytes(latin1("\n".join(qa_lines[:2] + [json.dumps(
        {**json.loads(qa_lines[2]), "answer": "côté gauche"}, ensure_ascii=False)]) + "\n"))
    ws["qa_broken"] = bad / "qa_broken.jsonl"
    ws["qa_broken"].write_text(qa_lines[0] + "\n{not json\n")
    drad = bad / "3drad_latin1"
    shutil.copytree(ws["3drad"], drad)
    csv = drad / "test" / "Task4_Existence_Detection" / "Lung_nodule.csv"
    rows = csv.read_text().splitlines()
    rows[2] = rows[2].replace("Can a lung nodule be seen?", "Can a lung nodule be seen (côté)?")
    csv.write_bytes(latin1("\n".join(rows) + "\n"))
    ws["3drad_latin1"] = drad
    empty_task = bad / "3drad_empty" / "test" / "Task4_Existence_Detection"
    empty_task.mkdir(parents=True)
    (empty_task / "Lung_nodule.csv").write_text(ws["3drad_csv"].read_text().splitlines()[0] + "\n")
    ws["3drad_empty"] = bad / "3drad_empty"
    ws["baseline_broken"] = bad / "baseline_broken.json"
    ws["baseline_broken"].write_text('{"format_version": 1, "kind": "majority"}\n')
    (bad / "a_file").write_text("x\n")
    ws["a_file"] = bad / "a_file"
