"""CT-RATE volumes as downloaded: the metadata CSV gives Hounsfield units and geometry; uncorrected files warn.

The reference is CT-RATE's own fix script (``process_row``: SimpleITK ``SetSpacing(XY, Z)``,
``SetOrigin(ImagePositionPatient)``, ``SetDirection(row, column, cross)``, ``image * slope + intercept``
cast to int16), run here with SimpleITK on the same raw file.
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from tinymodels.volumes import phantom_ras

from volprobe.cli import main
from volprobe.errors import FormatError, VolprobeWarning
from volprobe.items import read_items
from volprobe.probes.datasets.ctrate import (CtRateReader, apply_metadata, read_metadata, uncorrected_reasons,
                                             volume_reader_for)
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared
from volprobe.segmentation.volume import load_volume

CSV_HEADER = ("VolumeName,Manufacturer,XYSpacing,ZSpacing,RescaleIntercept,RescaleSlope,"
              "ImagePositionPatient,ImageOrientationPatient\n")
ROW = 'valid_12_a_1.nii.gz,SIEMENS,"[0.7, 0.7]",1.5,-1024.0,1.0,"[-150.0, -160.5, -320.0]","[1, 0, 0, 0, 1, 0]"\n'
#: The phantom in DICOM's array layout: i along the row cosine (+x LPS = patient left), j along the column
#: cosine (+y LPS = posterior), k along their cross product (superior).
HU = np.ascontiguousarray(phantom_ras()[::-1, ::-1, :]).round().astype(np.int16)


def write_raw(path, sform_code: int = 1):
    """CT-RATE's first release: raw stored values (HU + 1024) as uint16, spacing 1 mm, no real geometry."""
    img = nib.Nifti1Image((HU.astype(np.int32) + 1024).astype(np.uint16), np.eye(4))
    img.set_sform(np.eye(4), code=sform_code)
    img.set_qform(np.eye(4), code=sform_code)
    nib.save(img, str(path))
    return path


def fixed_by_ctrates_script(raw_path, out_path):
    """CT-RATE's fix script (process_row) applied to the raw file with the row's values."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(raw_path))
    image.SetSpacing((0.7, 0.7, 1.5))
    image.SetOrigin((-150.0, -160.5, -320.0))
    row_cosine, col_cosine = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    image.SetDirection(row_cosine + col_cosine + np.cross(row_cosine, col_cosine).tolist())
    adjusted = sitk.Cast(image * 1.0 + (-1024.0), sitk.sitkInt16)
    sitk.WriteImage(adjusted, str(out_path))
    return out_path


@pytest.fixture
def metadata(tmp_path):
    path = tmp_path / "validation_metadata.csv"
    path.write_text(CSV_HEADER + ROW)
    return path


def test_metadata_rows_are_read_and_malformed_ones_named(metadata, tmp_path):
    row = read_metadata(metadata)["valid_12_a_1"]
    assert (row.slope, row.intercept, row.spacing) == (1.0, -1024.0, (0.7, 0.7, 1.5))
    assert row.position == (-150.0, -160.5, -320.0) and row.orientation == (1, 0, 0, 0, 1, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV_HEADER + ROW + 'valid_13_a_1.nii.gz,GE,"[0.7]",1.5,-1024,1,"[0, 0, 0]","[1, 0, 0, 0, 1, 0]"\n')
    with pytest.raises(FormatError, match=r"bad.csv:3: XYSpacing"):
        read_metadata(bad)
    (tmp_path / "other.csv").write_text("VolumeName,Spacing\nx,1\n")
    with pytest.raises(FormatError, match="missing column.*RescaleSlope"):
        read_metadata(tmp_path / "other.csv")


@pytest.mark.parametrize("sform_code", [1, 0])
def test_raw_volume_plus_row_gives_hounsfield_units_and_geometry(metadata, tmp_path, sform_code):
    """Equal to CT-RATE's fixed file, voxel for voxel and in patient space, even when the raw header has no
    orientation at all (the row's position and orientation give it)."""
    raw = write_raw(tmp_path / "valid_12_a_1.nii.gz", sform_code)
    reader = CtRateReader(read_metadata(metadata))
    corrected = reader(raw, "valid_12_a_1", "valid_12")
    assert corrected.array.dtype == np.int16 and np.array_equal(corrected.array, HU)
    assert np.allclose(corrected.spacing, (0.7, 0.7, 1.5)) and corrected.patient == "valid_12"
    assert corrected.meta["ctrate_metadata"]["rescale"] == "HU = raw x 1 + -1024"
    fixed = load_volume(fixed_by_ctrates_script(write_raw(tmp_path / "raw1.nii.gz"), tmp_path / "fixed.nii.gz"))
    assert np.array_equal(fixed.array, corrected.array) and np.allclose(fixed.affine, corrected.affine)
    assert "".join(corrected.axcodes) == "LPS" and not uncorrected_reasons(corrected)


def test_a_file_already_in_hu_is_left_as_it_is(metadata, tmp_path):
    fixed = load_volume(fixed_by_ctrates_script(write_raw(tmp_path / "raw.nii.gz"), tmp_path / "valid_12_a_1.nii.gz"))
    again, done = apply_metadata(fixed, read_metadata(metadata)["valid_12_a_1"])
    assert np.array_equal(again.array, fixed.array) and np.allclose(again.affine, fixed.affine)
    assert done["rescale"].startswith("not applied: values already in HU")


def test_uncorrected_ctrate_volume_without_a_row_warns_what_to_pass(tmp_path):
    raw = write_raw(tmp_path / "valid_3_b_2.nii.gz")
    assert volume_reader_for([], None) is None  # nothing CT-RATE about the run: plain reading
    reader = CtRateReader({})
    with pytest.warns(VolprobeWarning, match="uncorrected CT-RATE volume.*--ctrate-metadata"):
        volume = reader(raw, "valid_3_b_2", None)
    assert reader.uncorrected == ["valid_3_b_2"] and volume.array.dtype == np.uint16
    reasons = uncorrected_reasons(volume)
    assert any("no air" in r for r in reasons) and any("1 x 1 x 1 mm" in r for r in reasons)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VolprobeWarning)
        reader(raw, "valid_3_b_2", None)  # once per run, not per volume
    assert reader.uncorrected == ["valid_3_b_2", "valid_3_b_2"]
    other = CtRateReader({})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other(write_raw(tmp_path / "case_1.nii.gz"), "case_1", None)  # not a CT-RATE name: no CT-RATE warning
    assert other.uncorrected == [] and not any("CT-RATE" in str(w.message) for w in caught)


class VolumeSpy(ModelAdapter):
    """Remembers the minimum value and spacing of every volume it is given."""

    name = "volume-spy"
    seen: list = []

    def prepare(self, volume) -> Prepared:
        if volume is not None:
            VolumeSpy.seen.append((float(volume.array.min()), tuple(round(s, 3) for s in volume.spacing)))
        return Prepared(data=None, input_hash=str(len(VolumeSpy.seen)), no_image=volume is None)

    def generate(self, batch):
        return [Generation(item.answer) for _, item in batch]


def test_import_stores_rows_and_run_applies_them(metadata, tmp_path):
    from volprobe.probes.run.engine import run_from_files

    (tmp_path / "volumes").mkdir()
    write_raw(tmp_path / "volumes" / "valid_12_a_1.nii.gz")
    write_raw(tmp_path / "volumes" / "valid_13_a_1.nii.gz")  # no row for this one
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps({"case_id": f"{case}.nii.gz", "question": "Which side is the effusion on?",
                                        "answer": "left"}) for case in ("valid_12_a_1", "valid_13_a_1")) + "\n")
    result = CliRunner().invoke(main, ["import", "ctspatialvqa", str(qa), "--volumes", str(tmp_path / "volumes"),
                                       "--ctrate-metadata", str(metadata), "--out", str(tmp_path / "items.jsonl")])
    assert result.exit_code == 0, result.output
    assert "1 of 2 cases have no row" in result.output and "1 CT-RATE volume(s) look uncorrected (valid_13_a_1)" \
        in result.output and "--ctrate-metadata" in result.output
    items = read_items(tmp_path / "items.jsonl")
    assert items[0].metadata["ctrate_metadata"]["spacing"] == [0.7, 0.7, 1.5]
    assert "ctrate_metadata" not in items[1].metadata
    manifest = json.loads((tmp_path / "items.jsonl.manifest.json").read_text())
    assert manifest["parameters"]["ctrate_metadata"] == str(metadata)

    VolumeSpy.seen = []
    with pytest.warns(VolprobeWarning, match="valid_13_a_1.*uncorrected"):
        run_from_files("volume-spy", tmp_path / "items.jsonl", ["full"], tmp_path / "run",
                       loader=lambda spec, **kw: VolumeSpy(), progress=False)
    assert sorted(VolumeSpy.seen) == [(-1000.0, (0.7, 0.7, 1.5)), (24.0, (1.0, 1.0, 1.0))]

    VolumeSpy.seen = []  # the CSV given to the run: rows apply whether the items carry them or not
    (tmp_path / "all.csv").write_text(CSV_HEADER + ROW + ROW.replace("valid_12", "valid_13"))
    run_from_files("volume-spy", tmp_path / "items.jsonl", ["full"], tmp_path / "run2",
                   loader=lambda spec, **kw: VolumeSpy(), progress=False, ctrate_metadata=tmp_path / "all.csv")
    assert VolumeSpy.seen == [(-1000.0, (0.7, 0.7, 1.5))] * 2
    manifest = json.loads((tmp_path / "run2" / "manifest.json").read_text())
    assert manifest["run"]["settings"]["ctrate_metadata"] == str(tmp_path / "all.csv")
