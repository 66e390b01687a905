"""The feature classes one radfuse extractor uses: PyRadiomics' own, or radfuse's subclasses of them.

PyRadiomics' extractor looks its feature classes up in the module-wide `radiomics.getFeatureClasses()`. radfuse's
extractor (`extractor.RadfuseExtractor`) instead holds its own mapping, built here, so a faster kernel is a
subclass used by that one extractor and never a patch of PyRadiomics' classes: two extractors in one process (or
two threads of one) can run with and without radfuse's kernels side by side.

With `fast=True` the mapping holds:

- `glcm`: `fast_glcm.FastGLCM` (MCC by the symmetric eigensolver per angle, marginals by bincount, cluster moments from
  p_{x+y});
- `firstorder`, `glcm`, `glrlm`, `glszm`, `gldm`, `ngtdm`: each with `SharedBinning`, so the image an extractor
  hands to its feature classes is discretised once per image type instead of once per class (PyRadiomics'
  own `binImage` on the same array, mask and settings: identical grey levels).

Profiled (bench/RESULTS.md, 2026-12-03): GLSZM, GLRLM, GLDM and NGTDM build their matrices in PyRadiomics' C
extension (`radiomics._cmatrices`) and take 1-4 ms per image each; GLCM took ~75 % of a wang2025 extraction, so
GLCM is the class with a new kernel. The kernels were written against one PyRadiomics release
(`KERNELS_WRITTEN_FOR`); with another installed, the stock classes are used and a warning says so.

`backend="torch"` (`extract.backend=torch`, the optional GPU backend) puts `torch_glcm.TorchGLCM` in place of
`FastGLCM`: the GLCM counts, coefficients and MCC on a torch device (`extract.device`: auto = CUDA when present);
every other class stays as above, on the CPU.
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings
from typing import Any

import numpy as np

KERNELS_WRITTEN_FOR = ("pyradiomics-bhklab", "3.1.4")
BINNED_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


class KernelVersionWarning(UserWarning):
    """Another PyRadiomics release than the one radfuse's kernels reproduce: its stock classes are used."""


class SharedBinning:
    """Mixin for a PyRadiomics feature class: take the discretised image from `binned` instead of binning again.

    `binned` = (discretised array, grey levels present in the ROI), computed by `bin_once` from the same image
    array, mask and settings as the class's own `_applyBinning` would use; None: bin as PyRadiomics does.
    """

    def __init__(self, inputImage, inputMask, binned: tuple[np.ndarray, np.ndarray] | None = None,  # noqa: N803
                 **kwargs: Any) -> None:
        self._radfuse_binned = binned
        super().__init__(inputImage, inputMask, **kwargs)

    def _applyBinning(self, matrix: np.ndarray) -> np.ndarray:  # noqa: N802 - PyRadiomics' name
        if self._radfuse_binned is None:
            return super()._applyBinning(matrix)
        discretised, grey_levels = self._radfuse_binned
        self.coefficients["grayLevels"] = grey_levels
        self.coefficients["Ng"] = int(np.max(grey_levels))
        return discretised


def bin_once(image_array: np.ndarray, mask_array: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """PyRadiomics' `_applyBinning` (radiomics/base.py) for one image type; both arrays read-only, so no feature
    class can change what the next one receives."""
    from radiomics import imageoperations

    discretised, _ = imageoperations.binImage(image_array, mask_array, **settings)
    grey_levels = np.unique(discretised[mask_array])
    discretised.setflags(write=False)
    grey_levels.setflags(write=False)
    return discretised, grey_levels


def installed_pyradiomics() -> tuple[str, str]:
    name = KERNELS_WRITTEN_FOR[0]
    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        import radiomics

        return "radiomics", str(getattr(radiomics, "__version__", "unknown"))


BACKENDS = ("numpy", "torch")


def feature_classes(fast: bool = True, backend: str = "numpy", device: str = "auto") -> dict[str, type]:
    """Feature class name -> class, for one extractor (module doc). A new dict each call: callers may edit it."""
    if backend not in BACKENDS:
        raise ValueError(f"extract.backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if not (fast and kernels_match()):
        if backend == "torch":
            raise ValueError("extract.backend=torch runs radfuse's kernels: it needs extract.fast_kernels=true and "
                             f"{'=='.join(KERNELS_WRITTEN_FOR)}")
        return dict(_stock_classes())
    classes = dict(_fast_classes())
    if backend == "torch":
        classes["glcm"] = _torch_glcm(device)
    return classes


@functools.lru_cache(maxsize=4)
def _torch_glcm(device: str) -> type:
    from radfuse.extract.torch_glcm import resolve_device, torch_glcm_class

    base = torch_glcm_class(resolve_device(device))
    return type(f"Binned{base.__name__}", (SharedBinning, base), {"__module__": base.__module__,
                                                                  "__doc__": base.__doc__})


def kernels_match() -> bool:
    """True when the installed PyRadiomics is the release radfuse's kernels were written for (else warn)."""
    installed = installed_pyradiomics()
    if installed != KERNELS_WRITTEN_FOR:
        warnings.warn(f"radfuse's radiomics kernels reproduce {' '.join(KERNELS_WRITTEN_FOR)}, but "
                      f"{' '.join(installed)} is installed: using PyRadiomics' own feature classes (slower, values "
                      f"PyRadiomics'). Install {'=='.join(KERNELS_WRITTEN_FOR)} or set extract.fast_kernels=false "
                      "to silence this.", KernelVersionWarning, stacklevel=3)
        return False
    return True


@functools.lru_cache(maxsize=1)
def _stock_classes() -> dict[str, type]:
    import radiomics

    return dict(radiomics.getFeatureClasses())


@functools.lru_cache(maxsize=1)
def _fast_classes() -> dict[str, type]:
    from radfuse.extract.fast_glcm import FastGLCM

    classes = dict(_stock_classes())
    classes["glcm"] = FastGLCM
    for name in BINNED_CLASSES:
        base = classes[name]
        classes[name] = type(f"Binned{base.__name__}", (SharedBinning, base), {"__module__": base.__module__,
                                                                              "__doc__": base.__doc__})
    return classes
