"""radfuse's kernels (feature_classes, fast_glcm) against stock PyRadiomics with the kernels off, per
feature class, on random ROIs with ties, tiny ROIs (one and two voxels thin, two grey levels), resampled and
normalised images; and the per-extractor mapping that leaves PyRadiomics' own classes alone."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from radfuse.extract import feature_classes as fc
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import extract_roi

RTOL = 1e-9  # radfuse's kernels differ from PyRadiomics by rounding only (the acceptance bound is 1e-6)
CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape")


def _image(values: np.ndarray, spacing=(0.8, 0.8, 1.5)) -> sitk.Image:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 30.0))
    return image


def _sphere(shape: tuple[int, int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    centre = np.array(shape) / 2 + rng.uniform(-1, 1, 3)
    return (np.sqrt(((np.indices(shape).T - centre) ** 2).sum(-1)).T <= radius).astype(np.uint8)


def _roi(kind: str, seed: int = 0) -> tuple[sitk.Image, sitk.Image, dict]:
    """(image, mask, settings) of one kind of test ROI."""
    rng = np.random.default_rng(seed)
    shape = (16, 24, 24)
    resampled = {"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline"}
    if kind == "textured_resampled":  # float CT-like values, B-spline resampling, 60+ levels
        values = rng.normal(300, 40, shape)
        return _image(values), _image(_sphere(shape, 6, rng)), {"binWidth": 5, **resampled}
    if kind == "normalised":  # liu2025's settings on an int16 scan
        values = np.round(rng.normal(300, 40, shape)).astype(np.int16)
        return _image(values), _image(_sphere(shape, 6, rng)), {"normalize": True, "binCount": 32, **resampled}
    if kind == "ties":  # four grey values only: every texture matrix full of ties
        values = rng.integers(0, 4, shape).astype(np.float64) * 10.0
        return _image(values), _image(_sphere(shape, 7, rng)), {"binWidth": 10}
    if kind in ("one_voxel_thin", "two_voxels_thin"):  # a slab 1 or 2 voxels thick, two grey levels
        values = rng.integers(0, 2, shape).astype(np.float64) * 100.0
        mask = np.zeros(shape, np.uint8)
        mask[8:8 + (1 if kind == "one_voxel_thin" else 2), 6:18, 6:18] = 1
        return _image(values), _image(mask), {"binWidth": 50}
    if kind == "asymmetric_glcm":  # PyRadiomics' exact MCC path (no symmetric eigensolver)
        values = rng.normal(300, 40, shape)
        return _image(values), _image(_sphere(shape, 6, rng)), {"binWidth": 10, "symmetricalGLCM": False}
    raise ValueError(kind)


KINDS = ("textured_resampled", "normalised", "ties", "one_voxel_thin", "two_voxels_thin", "asymmetric_glcm")


def _params(feature_class: str, settings: dict) -> dict:
    return load_params({"imageType": {"Original": {}}, "featureClass": {feature_class: []},
                        "setting": {"label": 1, **settings}})


@pytest.mark.parametrize("feature_class", CLASSES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_feature_equals_stock_pyradiomics(kind, feature_class):
    image, mask, settings = _roi(kind)
    params = _params(feature_class, settings)
    reference, reference_diagnostics = extract_roi(image, mask, 1, params, fast=False)
    ours, diagnostics = extract_roi(image, mask, 1, params, fast=True)
    assert ours.keys() == reference.keys() and len(ours) >= 5
    wrong = [f"{name}: radfuse {ours[name]!r}, PyRadiomics {value!r}" for name, value in reference.items()
             if not np.isclose(ours[name], value, rtol=RTOL, atol=0) and not (np.isnan(value) and np.isnan(ours[name]))]
    assert not wrong, wrong
    levels = [k for k in reference_diagnostics if k.startswith("diagnostics_radfuse_grey_levels_")]
    assert all(diagnostics[k] == reference_diagnostics[k] for k in levels)


def test_extractor_has_its_own_classes_and_pyradiomics_keeps_its_own():
    import radiomics
    from radiomics.glcm import RadiomicsGLCM

    from radfuse.extract.extractor import RadfuseExtractor
    from radfuse.extract.fast_glcm import FastGLCM

    stock_before = dict(radiomics.getFeatureClasses())
    fast, plain = RadfuseExtractor({}, fast=True), RadfuseExtractor({}, fast=False)
    assert issubclass(fast.feature_classes["glcm"], FastGLCM)
    assert all(issubclass(fast.feature_classes[n], fc.SharedBinning) for n in fc.BINNED_CLASSES)
    assert plain.feature_classes == stock_before
    image, mask, settings = _roi("ties")
    extract_roi(image, mask, 1, _params("glcm", settings), fast=True)
    assert radiomics.getFeatureClasses() == stock_before
    assert radiomics.getFeatureClasses()["glcm"] is RadiomicsGLCM
    assert RadiomicsGLCM.getMCCFeatureValue is not FastGLCM.getMCCFeatureValue  # nothing swapped class-wide
    fast.feature_classes["glcm"] = None  # editing one extractor's mapping touches no other
    assert RadfuseExtractor({}, fast=True).feature_classes["glcm"] is not None


def test_threads_with_and_without_kernels_do_not_interfere():
    image, mask, settings = _roi("textured_resampled", seed=3)
    params = _params("glcm", settings)
    expected = {fast: extract_roi(image, mask, 1, params, fast=fast)[0] for fast in (True, False)}
    results, errors = {}, []

    def run(fast: bool, i: int) -> None:
        try:
            results[(fast, i)] = extract_roi(image, mask, 1, params, fast=fast)[0]
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i % 2 == 0, i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for (fast, _), features in results.items():
        assert features == expected[fast]


def test_other_pyradiomics_release_falls_back_to_stock_classes_with_a_warning(monkeypatch):
    monkeypatch.setattr(fc, "installed_pyradiomics", lambda: ("pyradiomics-bhklab", "9.9.9"))
    with pytest.warns(fc.KernelVersionWarning, match="9.9.9"):
        classes = fc.feature_classes(fast=True)
    assert classes == fc._stock_classes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fc.feature_classes(fast=False) == fc._stock_classes()  # kernels off: nothing to warn about


def _glcm_with_rare_levels(probability: float) -> np.ndarray:
    """A symmetrical (1, 6, 6, 2) GLCM whose grey levels 0 and 1 are rare: each co-occurs with the other and with
    every common level at `probability`, so that p_x(0) p_x(1) comes near eps."""
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 50, (1, 6, 6, 2)).astype(float)
    total = counts.sum()
    counts[0, :2, :, :] = counts[0, :, :2, :] = 0
    counts[0, 0, 1, :] = counts[0, 0, 2:, :] = counts[0, 1, 2:, :] = probability * total
    glcm = counts + counts.transpose(0, 2, 1, 3)
    return glcm / glcm.sum((1, 2), keepdims=True)


def _mcc(cls: type, glcm: np.ndarray) -> float:
    instance = cls.__new__(cls)
    instance.P_glcm, instance.symmetricalGLCM, instance.weightingNorm = glcm, True, None
    instance.coefficients = {"px": glcm.sum(2, keepdims=True), "py": glcm.sum(1, keepdims=True),
                             "eps": np.spacing(1)}
    return float(cls.getMCCFeatureValue(instance)[0])


@pytest.mark.parametrize(("probability", "symmetric_route"), [(1e-5, True), (3e-6, True), (1e-8, False)])
def test_mcc_accounts_for_eps_or_takes_pyradiomics_route(probability, symmetric_route):
    """PyRadiomics' eps (2.2e-16 added to p_x(i) p_y(k)) moves MCC by 1e-13 relative at probability 1e-5 here:
    radfuse's first-order correction reproduces it to 1e-15, and where p_x p_y comes too near eps to bound the
    remainder, PyRadiomics' own eigenvalues are used."""
    from radiomics.glcm import RadiomicsGLCM

    from radfuse.extract.fast_glcm import FastGLCM, _second_eigenvalues_symmetric

    glcm = _glcm_with_rare_levels(probability)
    assert bool(_second_eigenvalues_symmetric(glcm, np.spacing(1))[1].all()) == symmetric_route
    assert _mcc(FastGLCM, glcm) == pytest.approx(_mcc(RadiomicsGLCM, glcm), rel=1e-14, abs=0)


@pytest.mark.parametrize("case", ["present", "absent", "empty"])
def test_mask_check_is_pyradiomics_getmask(case):
    from radiomics import imageoperations

    from radfuse.extract.extractor import _get_mask

    array = np.zeros((4, 5, 6), np.uint8)
    if case != "empty":
        array[1:3, 1:4, 2:5] = 2 if case == "present" else 3
    mask = sitk.GetImageFromArray(array)
    if case == "present":
        ours, theirs = _get_mask(mask, label=2), imageoperations.getMask(mask, label=2)
        assert ours.GetPixelID() == theirs.GetPixelID() == sitk.sitkUInt32
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
        return
    with pytest.raises(ValueError) as theirs:
        imageoperations.getMask(mask, label=2)
    with pytest.raises(ValueError) as ours:
        _get_mask(mask, label=2)
    assert str(ours.value) == str(theirs.value)


def test_a_radiomics_worker_never_imports_pandas(tmp_path):
    """Workers extract and write JSON: pandas (0.5-3 s of imports on the shared machine) stays out of them."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, SimpleITK as sitk\n"
            "from radfuse.extract.radiomics import Roi, run_scan_task\n"
            "rng = np.random.default_rng(0)\n"
            "image = sitk.GetImageFromArray(rng.normal(0, 50, (12, 16, 16)))\n"
            "mask = np.zeros((12, 16, 16), np.uint8); mask[3:9, 4:12, 4:12] = 1\n"
            "mask = sitk.GetImageFromArray(mask)\n"
            f"sitk.WriteImage(image, r'{tmp_path}/i.nii.gz'); sitk.WriteImage(mask, r'{tmp_path}/m.nii.gz')\n"
            "params = {'imageType': {'Original': {}}, 'featureClass': {'glcm': [], 'firstorder': []},\n"
            "          'setting': {'binCount': 16, 'resampledPixelSpacing': [1, 1, 1],\n"
            "                      'interpolator': 'sitkBSpline'}}\n"
            f"task = Roi('c', r'{tmp_path}/i.nii.gz', r'{tmp_path}/m.nii.gz', 1, key='k' * 64)\n"
            f"outcome = run_scan_task([task], params, r'{tmp_path}/cache')[0]\n"
            "assert outcome.status == 'computed', outcome\n"
            "assert 'pandas' not in sys.modules, 'pandas imported'\n")
    import os
    from pathlib import Path

    import radfuse

    env = {**os.environ, "PYTHONPATH": str(Path(radfuse.__file__).parents[1])}  # this checkout's radfuse
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_mcc_mixes_routes_per_angle_as_pyradiomics_would():
    """An angle whose 2nd eigenvalue equals the 1st (a grey level cut off from the others in that direction) takes
    PyRadiomics' eigenvalues; the other angles keep the symmetric route; the mean over angles is PyRadiomics'."""
    from radiomics.glcm import RadiomicsGLCM

    from radfuse.extract.fast_glcm import FastGLCM, _second_eigenvalues_symmetric

    glcm = _glcm_with_rare_levels(1e-3)
    glcm[0, 0, :, 1] = glcm[0, :, 0, 1] = 0
    glcm[0, 0, 0, 1] = 0.01  # angle 1: level 0 only next to itself, its own block (eigenvalue 1 twice)
    glcm /= glcm.sum((1, 2), keepdims=True)
    ok = _second_eigenvalues_symmetric(glcm, np.spacing(1))[1]
    assert ok.tolist() == [[True, False]]
    assert _mcc(FastGLCM, glcm) == pytest.approx(_mcc(RadiomicsGLCM, glcm), rel=1e-14, abs=0)
