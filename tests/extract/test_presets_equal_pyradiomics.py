"""The liu2025 preset, through radfuse's extractor (crop and kernels on), gives PyRadiomics' own values (no crop,
PyRadiomics' stock classes and resampling) within 1e-6 relative for every feature, on real CT: the spine CT's
vertebral bodies. liu2025 normalises and resamples with a cubic B-spline, where a resampling that differs from
ITK's only by rounding moved one voxel across the 10th percentile and changed RobustMeanAbsoluteDeviation by
1.8e-5 (L3's body): the reason radfuse resamples with ITK's own code."""

from __future__ import annotations

from pathlib import Path

import pytest

from radfuse.extract.params import load_params
from radfuse.extract.radiomics import extract_roi

CONF = Path(__file__).resolve().parents[2] / "conf" / "radiomics"


@pytest.mark.parametrize("label", [20, 21, 22, 23, 24])
def test_liu2025_on_vertebral_bodies_equals_pyradiomics(spine_ct, label):
    params = load_params(CONF / "liu2025.yaml")
    image, mask = spine_ct / "ct.nii.gz", spine_ct / "vertebral_bodies.nii.gz"
    reference, _ = extract_roi(image, mask, label, params, crop=False, fast=False)  # PyRadiomics as it is
    ours, _ = extract_roi(image, mask, label, params, fast=True)
    assert ours.keys() == reference.keys() and len(reference) == 107
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-12), name
