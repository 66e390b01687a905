"""Params files: shipped presets are valid PyRadiomics files; missing filter packages and empty outputs fail loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radfuse.extract import params as params_module
from radfuse.extract._compat import legacy_sph_harm
from radfuse.extract.params import (RadiomicsConfigError, check_requirements, image_type_of, load_params,
                                    missing_outputs)
from radfuse.extract.radiomics import RoiError, extract_roi

PRESETS = sorted((Path(__file__).resolve().parents[2] / "conf" / "radiomics").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_shipped_preset_is_valid_and_its_filters_are_available(preset):
    params = load_params(preset)
    check_requirements(params)
    assert params["imageType"] and params["featureClass"]


def test_presets_say_what_the_papers_say():
    wang = load_params(PRESETS[[p.stem for p in PRESETS].index("wang2025")])
    assert set(wang["imageType"]) == {"Original", "LoG", "Wavelet", "LBP3D", "Exponential", "Square", "SquareRoot",
                                      "Logarithm", "Gradient"}
    assert wang["imageType"]["LoG"]["sigma"] == [1.0, 2.0, 3.0]
    assert wang["setting"]["binWidth"] == 5 and wang["setting"]["resampledPixelSpacing"] == [1, 1, 1]
    liu = load_params(PRESETS[[p.stem for p in PRESETS].index("liu2025")])
    assert set(liu["featureClass"]) == {"firstorder", "shape", "glcm", "glszm", "glrlm", "ngtdm", "gldm"}
    assert liu["setting"]["normalize"] is True and liu["setting"]["interpolator"] == "sitkBSpline"


def test_invalid_params_name_the_file_and_the_docs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidht: 25\n")
    with pytest.raises(RadiomicsConfigError, match="bad.yaml is not a valid PyRadiomics params file"):
        load_params(bad)
    with pytest.raises(RadiomicsConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_missing_filter_package_fails_before_any_work(monkeypatch):
    monkeypatch.setitem(params_module.REQUIRED_MODULES, "LBP3D", (("radfuse_no_such_module", None),))
    with pytest.raises(RadiomicsConfigError, match="LBP3D .*silently skip.*pip install"):
        check_requirements({"imageType": {"LBP3D": {}}})


def test_legacy_sph_harm_matches_scipy_new_function():
    sph_harm_y = pytest.importorskip("scipy.special").sph_harm_y
    azimuth, polar = np.linspace(-3, 3, 9), np.linspace(0.05, 3.1, 9)
    for n in range(3):
        for m in range(-n, n + 1):  # legacy argument order: (m, n, azimuthal, polar)
            np.testing.assert_allclose(legacy_sph_harm(m, n, azimuth, polar), sph_harm_y(n, m, polar, azimuth),
                                       atol=1e-14)


def _blob(size: int = 20) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(0)
    z, y, x = np.indices((size,) * 3)
    inside = ((z - size / 2) ** 2 + (y - size / 2) ** 2 + (x - size / 2) ** 2) <= (size / 3) ** 2
    image = sitk.GetImageFromArray((rng.normal(100, 30, inside.shape) + 200 * inside).astype(np.float32))
    return image, sitk.GetImageFromArray(inside.astype(np.uint8))


def test_lbp3d_yields_features_on_current_scipy():
    """PyRadiomics needs scipy.special.sph_harm (gone in SciPy 1.17); without radfuse's shim LBP3D vanishes. The
    shim lives only for the extraction: scipy.special is as SciPy made it before and after."""
    import scipy.special

    before = scipy.special.__dict__.get("sph_harm")
    params = load_params({"imageType": {"LBP3D": {}}, "featureClass": {"firstorder": []},
                          "setting": {"binWidth": 0.5}})
    check_requirements(params)
    assert scipy.special.__dict__.get("sph_harm") is before
    image, mask = _blob()
    features, _ = extract_roi(image, mask, 1, params)
    assert {k.split("_")[0] for k in features} == {"lbp-3D-m1", "lbp-3D-m2", "lbp-3D-k"}
    assert scipy.special.__dict__.get("sph_harm") is before


def test_the_sph_harm_shim_is_scoped_and_survives_overlapping_users():
    """Two extractions in threads of one worker overlap: the shim stays until the last one leaves."""
    import scipy.special

    from radfuse.extract._compat import legacy_sph_harm_in_scipy

    native = scipy.special.__dict__.get("sph_harm")
    with legacy_sph_harm_in_scipy():
        from scipy.special import sph_harm  # what PyRadiomics' LBP3D filter does

        assert sph_harm is (native or legacy_sph_harm)
        with legacy_sph_harm_in_scipy():
            pass
        assert scipy.special.__dict__.get("sph_harm") is (native or legacy_sph_harm)  # the outer user still has it
    assert scipy.special.__dict__.get("sph_harm") is native


def test_a_filter_that_yields_nothing_is_an_roi_error_not_a_silent_gap():
    params = load_params({"imageType": {"LoG": {"sigma": [50.0]}}, "featureClass": {"firstorder": []}})
    image, mask = _blob(12)
    with pytest.raises(RoiError, match="no features for image type LoG"):
        extract_roi(image, mask, 1, params)


def test_output_names_map_back_to_their_image_types():
    assert [image_type_of(t) for t in ("original", "log-sigma-1-0-mm-3D", "wavelet-LLH", "lbp-3D-k", "square",
                                       "squareroot", "gradient")] == \
        ["Original", "LoG", "Wavelet", "LBP3D", "Square", "SquareRoot", "Gradient"]
    params = {"imageType": {"Original": {}, "Square": {}}, "featureClass": {"glcm": [], "shape": []}}
    assert missing_outputs(params, ["original_glcm_Contrast", "original_shape_Sphericity"]) == ["image type Square"]


def test_wang2025_preset_gives_1874_features_from_every_image_type():
    """14 shape + 20 images x 93 (the paper reports 1834; docs/extract.md has the arithmetic)."""
    params = load_params(PRESETS[[p.stem for p in PRESETS].index("wang2025")])
    image, mask = _blob(24)
    image = sitk.Cast(image, sitk.sitkInt16)  # HU-like integers: a few dozen grey levels at bin width 5
    features, _ = extract_roi(image, mask, 1, params)
    assert len(features) == 1874
    images = {k.split("_")[0] for k in features}
    assert len(images) == 20 and {"lbp-3D-m1", "lbp-3D-m2", "lbp-3D-k", "log-sigma-3-0-mm-3D"} <= images
    assert sum(k.split("_")[1] == "shape" for k in features) == 14
