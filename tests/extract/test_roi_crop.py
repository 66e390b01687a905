"""Cropping to the ROI before PyRadiomics changes no value, and is skipped where it would (real spine CT)."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from radfuse.extract.params import load_params
from radfuse.extract.radiomics import extract_roi

L1 = 20  # vertebral_bodies.nii.gz: VerSe numbering


@pytest.fixture(scope="module")
def spine(spine_ct):
    return sitk.ReadImage(str(spine_ct / "ct.nii.gz")), sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz"))


def _both(image, mask, params):
    plain, _ = extract_roi(image, mask, L1, params, crop=False)
    cropped, diagnostics = extract_roi(image, mask, L1, params, crop=True)
    return plain, cropped, diagnostics["diagnostics_radfuse_crop"]


@pytest.mark.parametrize("setting", [{"preCrop": True}, {}], ids=["preCrop", "original-only"])
def test_crop_without_resampling_is_exact(spine, setting):
    params = load_params({"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": [], "shape": []},
                          "setting": {"binWidth": 25, **setting}})
    plain, cropped, how = _both(*spine, params)
    assert how.startswith("image and mask to ROI")
    assert cropped == plain  # bit for bit


def test_crop_before_resampling_a_float_image_is_exact(spine):
    image, mask = spine
    params = load_params({"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glszm": []},
                          "setting": {"binWidth": 5, "resampledPixelSpacing": [1, 1, 1],
                                      "interpolator": "sitkBSpline"}})
    plain, cropped, how = _both(sitk.Cast(image, sitk.sitkFloat32), mask, params)
    assert how == "image to resampling reach"
    assert cropped == plain


@pytest.mark.parametrize(("setting", "image_types", "reason"), [
    ({"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline"}, {"Original": {}}, "integer image"),
    ({"normalize": True}, {"Original": {}}, "normalize"),
    ({}, {"Original": {}, "Square": {}}, "whole-image filters"),
])
def test_no_crop_where_values_could_change(spine, setting, image_types, reason):
    params = load_params({"imageType": image_types, "featureClass": {"firstorder": []},
                          "setting": {"binWidth": 25, **setting}})
    _, diagnostics = extract_roi(*spine, L1, params, crop=True)
    assert reason in diagnostics["diagnostics_radfuse_crop"]
