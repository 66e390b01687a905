"""radfuse's GLCM kernel (fast_glcm.FastGLCM: MCC by the symmetric eigensolver, marginals by bincount, cluster
moments from p_{x+y}) equals PyRadiomics' own code on real bone with hundreds of grey levels, for every GLCM
feature; random and tiny ROIs are in test_kernels."""

from __future__ import annotations

import pytest

from radfuse.extract.params import load_params
from radfuse.extract.radiomics import extract_roi


@pytest.mark.parametrize(("label", "bin_width"), [(20, 5), (23, 25)])
def test_every_glcm_feature_equals_pyradiomics(spine_ct, label, bin_width):
    params = load_params({"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}}, "featureClass": {"glcm": []},
                          "setting": {"binWidth": bin_width, "resampledPixelSpacing": [1, 1, 1],
                                      "interpolator": "sitkBSpline"}})
    image, mask = spine_ct / "ct.nii.gz", spine_ct / "vertebral_bodies.nii.gz"
    reference, diagnostics = extract_roi(image, mask, label, params, fast=False)
    ours, _ = extract_roi(image, mask, label, params, fast=True)
    assert len(reference) == 48 and ours.keys() == reference.keys()
    assert int(diagnostics["diagnostics_Mask-interpolated_VoxelNum"]) > 5000  # a real, large GLCM
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-10, abs=1e-300), name
