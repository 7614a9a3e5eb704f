"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real CT crop + TotalSegmentator's real output for it (the project's TotalSegmentator fixture, Apache-2.0).
TOTALSEG_DIR = REPO / "tests" / "data" / "totalseg"
FIXTURE_CT = TOTALSEG_DIR / "example_ct_sm.nii.gz"
FIXTURE_SEG = TOTALSEG_DIR / "example_seg.nii.gz"


@pytest.fixture(scope="session")
def totalseg_fixture() -> tuple[Path, Path]:
    """(CT path, TotalSegmentator multilabel path) of the real fixture."""
    assert FIXTURE_CT.exists() and FIXTURE_SEG.exists(), f"fixture missing in {TOTALSEG_DIR}"
    return FIXTURE_CT, FIXTURE_SEG
