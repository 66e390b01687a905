"""radfuse's extractor writes PyRadiomics' own diagnostics and features, value for value, with cheaper provenance."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radfuse.extract.extractor import RadfuseExtractor
from radfuse.extract.params import quiet_pyradiomics, split_result
from radfuse.extract.provenance import image_sha1

ORIGINAL = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "shape": [], "glszm": []}}
SETTINGS = {
    "plain": {"binWidth": 25, "label": 1},
    "resampled, normalised": {"normalize": True, "binCount": 16, "resampledPixelSpacing": [1, 1, 1],
                              "interpolator": "sitkBSpline", "label": 1},
}


def _both(image, mask, label, settings):
    quiet_pyradiomics()
    params = {**ORIGINAL, "setting": settings}
    theirs = split_result(RadiomicsFeatureExtractor(params).execute(image, mask, label=label))
    # kernels off: value for value
    ours = split_result(RadfuseExtractor(params, fast=False).execute(image, mask, label=label))
    return theirs, ({k: v for k, v in ours[0].items()}, {k: v for k, v in ours[1].items() if "radfuse" not in k})


def _two_blobs(pixel_type: int) -> tuple[sitk.Image, sitk.Image]:
    """A noisy image and a mask whose label 3 is two separate blobs (VolumeNum 2) beside a label 1."""
    rng = np.random.default_rng(1)
    array = rng.normal(40, 15, (20, 24, 28))
    mask = np.zeros(array.shape, np.uint8)
    mask[3:8, 4:9, 5:10] = 3
    mask[12:17, 14:20, 15:22] = 3
    mask[1:3, 1:3, 1:3] = 1
    image = sitk.Cast(sitk.GetImageFromArray(array), pixel_type)
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((-10.0, 4.0, 7.5))
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(image)
    return image, mask_image


@pytest.mark.parametrize("settings", list(SETTINGS), ids=list(SETTINGS))
@pytest.mark.parametrize("pixel_type", [sitk.sitkInt16, sitk.sitkFloat64], ids=["int16", "float64"])
def test_diagnostics_and_features_equal_pyradiomics_on_a_two_component_roi(settings, pixel_type):
    image, mask = _two_blobs(pixel_type)
    (their_features, their_diagnostics), (our_features, our_diagnostics) = _both(image, mask, 3, SETTINGS[settings])
    assert our_features == their_features
    assert our_diagnostics == their_diagnostics
    assert their_diagnostics["diagnostics_Mask-original_VolumeNum"] == "2"


def test_diagnostics_equal_pyradiomics_on_lung1_and_a_spine_vertebra(pyradiomics_reference, spine_ct):
    cases = [(pyradiomics_reference / "lung1_image.nrrd", pyradiomics_reference / "lung1_label.nrrd", 1),
             (spine_ct / "ct.nii.gz", spine_ct / "vertebral_bodies.nii.gz", 21)]
    for image, mask, label in cases:
        theirs, ours = _both(str(image), str(mask), label, SETTINGS["resampled, normalised"])
        assert ours == theirs


@pytest.mark.parametrize("pixel_type", [sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkFloat32, sitk.sitkFloat64])
def test_sha1_of_the_pixel_buffer_is_sitk_hash(pixel_type):
    image, _ = _two_blobs(pixel_type)
    assert image_sha1(image) == sitk.Hash(image)
