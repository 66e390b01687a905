"""GLCM MCC by one matrix product equals PyRadiomics' own loop (real bone, hundreds of grey levels)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from radfuse.extract.fast_glcm import fast_mcc, mcc_by_matmul


@pytest.mark.parametrize(("label", "bin_width"), [(20, 5), (22, 25)])
def test_mcc_by_matmul_equals_pyradiomics(spine_ct, label, bin_width):
    from radiomics import glcm, imageoperations

    image = sitk.ReadImage(str(spine_ct / "ct.nii.gz"))
    mask = imageoperations.getMask(sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz")), label=label)
    settings = {"label": label, "binWidth": bin_width}
    box, _ = imageoperations.checkMask(image, mask, **settings)
    image, mask = imageoperations.cropToTumorMask(image, mask, box)
    matrix = glcm.RadiomicsGLCM(image, mask, **settings)
    matrix._initCalculation()
    assert matrix.P_glcm.shape[1] > 20  # a real multi-level GLCM, not a toy
    reference = glcm.RadiomicsGLCM.getMCCFeatureValue(matrix)
    np.testing.assert_allclose(mcc_by_matmul(matrix), reference, rtol=1e-10, atol=0)


def test_fast_mcc_patch_is_scoped():
    from radiomics.glcm import RadiomicsGLCM

    original = RadiomicsGLCM.getMCCFeatureValue
    with fast_mcc(True):
        assert RadiomicsGLCM.getMCCFeatureValue is mcc_by_matmul
    assert RadiomicsGLCM.getMCCFeatureValue is original
    with fast_mcc(False):
        assert RadiomicsGLCM.getMCCFeatureValue is original
