"""radfuse's B-spline resampling (bspline) against ITK's / PyRadiomics' own: coefficients bit for bit, resampled
values to rounding, PyRadiomics' grid and mask exactly, and PyRadiomics' code wherever the shortcut does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import imageoperations

from radfuse.extract import bspline

SETTINGS = {"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline", "padDistance": 5, "label": 1}


def _pair(shape=(14, 30, 26), spacing=(0.8, 0.7, 1.5), dtype=np.float64, seed=0, integer=False):
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, shape) * 100
    values = np.round(values) if integer else values
    image = sitk.GetImageFromArray(values.astype(dtype))
    mask_array = np.zeros(shape, np.uint32)
    mask_array[3:9, 8:20, 6:17] = 1
    mask = sitk.GetImageFromArray(mask_array)
    for node in (image, mask):
        node.SetSpacing(spacing)
        node.SetOrigin((-12.5, 3.25, 40.0))
    return image, mask


@pytest.mark.parametrize("shape", [(14, 30, 26), (5, 12, 40), (1, 9, 7)])  # axes shorter than ITK's horizon, one of 1
def test_coefficients_are_itks_bit_for_bit(shape):
    image, _ = _pair(shape)
    expected = sitk.GetArrayFromImage(sitk.BSplineDecomposition(image, 3))
    ours = bspline.bspline_coefficients(sitk.GetArrayFromImage(image))
    assert np.array_equal(ours, expected)
    box = [slice(0, max(1, shape[0] // 2)), slice(2, shape[1] - 1), slice(1, 4)]
    assert np.array_equal(bspline.bspline_coefficients(sitk.GetArrayFromImage(image), box), expected[tuple(box)])


@pytest.mark.parametrize(("spacing", "dtype"), [((0.8, 0.7, 1.5), np.float64), ((1.3, 0.9, 2.5), np.float32),
                                                ((0.5, 0.5, 0.5), np.float64)])
def test_resampled_image_and_mask_equal_pyradiomics(spacing, dtype):
    image, mask = _pair(spacing=spacing, dtype=dtype)
    expected_image, expected_mask = imageoperations.resampleImage(image, mask, **SETTINGS)
    ours_image, ours_mask = bspline.resample_image(image, mask, **SETTINGS)
    for ours, expected in ((ours_image, expected_image), (ours_mask, expected_mask)):
        assert ours.GetSize() == expected.GetSize() and ours.GetPixelID() == expected.GetPixelID()
        assert ours.GetOrigin() == expected.GetOrigin() and ours.GetSpacing() == expected.GetSpacing()
        assert ours.GetDirection() == expected.GetDirection()
    assert np.array_equal(sitk.GetArrayFromImage(ours_mask), sitk.GetArrayFromImage(expected_mask))
    a, b = sitk.GetArrayFromImage(ours_image), sitk.GetArrayFromImage(expected_image)
    tolerance = 1e-12 if dtype == np.float64 else 1e-4  # float32 output: ITK rounds the same double to float
    assert np.abs(a - b).max() <= tolerance * np.abs(b).max()
    assert (a == 0).sum() == (b == 0).sum()  # the same voxels outside the image buffer


def test_grid_reaching_outside_the_image_is_zero_there_as_in_itk():
    image, mask = _pair()
    mask_array = sitk.GetArrayFromImage(mask)
    mask_array[:] = 0
    mask_array[0:4, 0:5, 20:26] = 1  # touching three borders: PyRadiomics' padded grid leaves the image
    clipped = sitk.GetImageFromArray(mask_array)
    clipped.CopyInformation(mask)
    a = sitk.GetArrayFromImage(bspline.resample_image(image, clipped, **SETTINGS)[0])
    b = sitk.GetArrayFromImage(imageoperations.resampleImage(image, clipped, **SETTINGS)[0])
    assert np.array_equal(a == 0, b == 0) and np.allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("case", ["integer_pixels", "linear", "same_spacing", "other_direction",
                                  "integer_values_on_nodes"])
def test_pyradiomics_code_wherever_the_shortcut_does_not_apply(case, monkeypatch):
    image, mask = _pair(spacing=(1 / 3, 1 / 3, 1 / 3) if case == "integer_values_on_nodes" else (0.8, 0.7, 1.5),
                        integer=case == "integer_values_on_nodes")
    settings = dict(SETTINGS)
    if case == "integer_pixels":
        image = sitk.Cast(image, sitk.sitkInt16)
    elif case == "linear":
        settings["interpolator"] = "sitkLinear"
    elif case == "same_spacing":
        settings["resampledPixelSpacing"] = [0.8, 0.7, 1.5]
    elif case == "other_direction":
        image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    calls = []
    original = imageoperations.resampleImage
    monkeypatch.setattr(imageoperations, "resampleImage", lambda *a, **k: calls.append(1) or original(*a, **k))
    bspline.resample_image(image, mask, **settings)
    assert calls == [1]
