"""The torch GLCM (the GPU backend's kernels, run here on the CPU) equals PyRadiomics' own GLCM: counts exactly,
every feature to 1e-6 relative, on lung1, on real bone with hundreds of grey levels, on random ROIs with ties, two
grey levels and one-voxel-thick ROIs, with and without distance weighting. On a CUDA machine the same checks run
on the GPU (marked `gpu`)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from radiomics import cMatrices, imageoperations
from radiomics.glcm import RadiomicsGLCM

from radfuse.extract.torch_glcm import TorchGLCM, glcm_counts, resolve_device, torch_glcm_class

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
               not torch.cuda.is_available(), reason="needs a CUDA device")])]


def _features(klass: type[RadiomicsGLCM], image: sitk.Image, mask: sitk.Image, **settings) -> dict[str, float]:
    glcm = klass(image, mask, **settings)
    glcm.enableAllFeatures()
    return {name: float(value) for name, value in glcm.execute().items()}


def _assert_equal_features(image: sitk.Image, mask: sitk.Image, device: str, **settings) -> None:
    reference = _features(RadiomicsGLCM, image, mask, label=1, **settings)
    ours = _features(torch_glcm_class(resolve_device(device)), image, mask, label=1, **settings)
    assert ours.keys() == reference.keys() and len(reference) >= 24
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-12, nan_ok=True), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(4, 5, 6), (1, 7, 8), (3, 1, 5), (6, 6, 6)])
def test_counts_equal_pyradiomics_c_kernel(device, shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(1, 6, shape).astype(np.int32)
    mask = rng.random(shape) > 0.3
    reference, angles = cMatrices.calculate_glcm(image, mask, np.array([1]), 5, False, 0)
    ours = glcm_counts(image, mask, angles, 5, resolve_device(device)).cpu().numpy()
    np.testing.assert_array_equal(ours, reference)
    assert reference.sum() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("settings", [{"binWidth": 25}, {"binWidth": 5}, {"binWidth": 25, "weightingNorm": "euclidean"},
                                      {"binCount": 32, "symmetricalGLCM": False}])
def test_lung1_every_feature(pyradiomics_reference, device, settings):
    image = sitk.ReadImage(str(pyradiomics_reference / "lung1_image.nrrd"))
    mask = sitk.ReadImage(str(pyradiomics_reference / "lung1_label.nrrd"))
    box, _ = imageoperations.checkMask(image, mask, label=1)
    image, mask = imageoperations.cropToTumorMask(image, mask, box)
    _assert_equal_features(image, mask, device, **settings)


@pytest.mark.parametrize("device", DEVICES)
def test_real_bone_with_hundreds_of_grey_levels(spine_ct, device):
    image, mask = sitk.ReadImage(str(spine_ct / "ct.nii.gz")), sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz"))
    mask = sitk.Cast(mask == 20, sitk.sitkUInt8)
    box, _ = imageoperations.checkMask(image, mask, label=1)
    image, mask = imageoperations.cropToTumorMask(image, mask, box)
    _assert_equal_features(image, mask, device, binWidth=5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("shape", "levels"), [((3, 4, 5), 2), ((1, 6, 6), 3), ((5, 5, 5), 8), ((2, 2, 2), 2),
                                               ((8, 1, 9), 4)])
def test_random_rois_with_ties_and_thin_rois(device, shape, levels):
    rng = np.random.default_rng(levels * 7 + shape[0])
    array = rng.integers(0, levels, shape).astype(float) * 25
    roi = (rng.random(shape) > 0.2).astype(np.uint8)
    roi.flat[0] = 1
    _assert_equal_features(sitk.GetImageFromArray(array), sitk.GetImageFromArray(roi), device, binWidth=25)


def test_each_device_gets_its_own_class_and_nothing_global_changes():
    import radiomics

    before = dict(radiomics.getFeatureClasses())
    cpu = torch_glcm_class(torch.device("cpu"))
    assert issubclass(cpu, TorchGLCM) and cpu.device == torch.device("cpu") and TorchGLCM.device.type == "cpu"
    assert radiomics.getFeatureClasses() == before and radiomics.getFeatureClasses()["glcm"] is RadiomicsGLCM


def test_cuda_asked_without_a_gpu_is_refused_with_the_fix():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    resolve_device.cache_clear()
    with pytest.raises(RuntimeError, match="extract.backend=numpy"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_extract_roi_with_the_torch_backend_equals_the_numpy_backend(spine_ct, device):
    """Through radfuse's extractor (per-extractor mapping, shared binning, crop): every feature of a filtered
    image, the same as the default backend's."""
    from radfuse.extract.params import load_params
    from radfuse.extract.radiomics import extract_roi

    params = load_params({"imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
                          "featureClass": {"glcm": [], "firstorder": ["Mean"]},
                          "setting": {"binWidth": 5, "resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline"}})
    image, mask = spine_ct / "ct.nii.gz", spine_ct / "vertebral_bodies.nii.gz"
    reference, _ = extract_roi(image, mask, 21, params)
    ours, _ = extract_roi(image, mask, 21, params, backend="torch", device=device)
    assert ours.keys() == reference.keys() and sum("_glcm_" in name for name in ours) == 48
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-300), name


def test_the_backend_is_chosen_per_extractor_and_keyed_in_the_cache():
    from radfuse.extract.feature_classes import feature_classes
    from radfuse.extract.radiomics import ExtractOptions

    torch_classes, numpy_classes = feature_classes(backend="torch", device="cpu"), feature_classes()
    assert issubclass(torch_classes["glcm"], TorchGLCM) and not issubclass(numpy_classes["glcm"], TorchGLCM)
    assert torch_classes["glszm"] is numpy_classes["glszm"]
    with pytest.raises(ValueError, match="extract.backend='jax' is not one of numpy, torch"):
        feature_classes(backend="jax")
    with pytest.raises(ValueError, match="fast_kernels=true"):
        feature_classes(fast=False, backend="torch")
    assert ExtractOptions().value_affecting() == {"crop": True, "fast_kernels": True, "resample_masks": False,
                                                  "diagnostics": "grey_levels"}  # caches made before stay valid
    assert ExtractOptions(backend="torch").value_affecting()["backend"] == "torch"
