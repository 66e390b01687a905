"""PyRadiomics on one ROI, and the cached per-scan task that the parallel runner hands to its workers.

`extract_roi` is PyRadiomics' `execute` (through radfuse's extractor subclass, `extractor`: grey-level counts,
cheaper provenance) with five additions: the mask put on the image's own array grid first, by the rule the
validator applies (`radfuse.data.io.align_mask`: lossless reorientation of a mask stored with permuted / flipped
axes or an origin within tolerance, nearest-neighbour resampling only with `resample_masks`), a value-preserving
crop to the ROI (`roi_crop`), radfuse's kernels (`feature_classes`), features and diagnostics split
apart, and a loud
error when a configured image type or feature class yields nothing for the ROI (PyRadiomics skips a filter for a
too-small image with a log line only).

`run_scan_task` is the worker's unit of work: every ROI of one scan, so the scan is read once per task. Filters
and resampling stay per ROI (why: the runner's module doc). Workers run ITK and BLAS on one thread each: scans are
the parallel axis, and on small ROIs ITK's per-filter thread hand-off costs more than it saves.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import SimpleITK as sitk
from threadpoolctl import ThreadpoolController

from radfuse.extract._compat import scipy_shims_for
from radfuse.extract.params import image_types, missing_outputs, quiet_pyradiomics, split_result
from radfuse.extract.roi_cache import RoiCache
from radfuse.extract.roi_crop import crop_to_roi


class RoiError(RuntimeError):
    """This ROI cannot give a complete feature vector (empty, too small for a filter, unreadable)."""


@dataclass(frozen=True)
class Roi:
    """One ROI: label `label` of `mask` on `image` (absolute paths), as the manifest gives it, and, once
    `runner.make_tasks` has hashed its inputs, the cache `key` of its features under one params set ("" before).

    The one ROI type of the radiomics code (issue 17: it replaces the near-identical RoiSpec / Roi pair;
    `runner.RoiSpec` is this class, positional fields as before)."""

    case_id: str
    image: str
    mask: str
    label: int | None = None  # None: the mask's only label
    reader: str = "mask"  # which manifest column the mask came from (mask / mask2 / mask_repeat)
    key: str = ""


@dataclass(frozen=True)
class ExtractOptions:
    """radfuse's knobs around PyRadiomics: value-preserving speed-ups and failure handling."""

    crop: bool = True          # crop to the ROI first where values stay identical (roi_crop)
    fast_kernels: bool = True  # radfuse's GLCM, shared binning, cheaper mask check (feature_classes, extractor)
    retry_failed: bool = False  # recompute ROIs whose failure is cached
    resample_masks: bool = False  # a mask on another grid: nearest-neighbour onto the image grid (data.resample_masks)
    backend: str = "numpy"     # numpy | torch: GLCM on a torch device (torch_glcm; extract.backend)
    device: str = "auto"       # the torch backend's device: auto (CUDA when present) | cpu | cuda | cuda:1

    def value_affecting(self) -> dict[str, bool]:
        """The options that enter the cache key (resample_masks since masks are aligned before PyRadiomics: the
        new entry also retires results cached before, geometry failures included)."""
        # "diagnostics": a cached result from before the grey-level count lacks it, so it is computed again
        # the torch backend's values equal numpy's to summation order; it still gets its own entries, so a table
        # never mixes the two (and the numpy entries cached before it existed stay valid)
        backend = {} if self.backend == "numpy" else {"backend": self.backend}
        return {"crop": self.crop, "fast_kernels": self.fast_kernels, "resample_masks": self.resample_masks,
                "diagnostics": "grey_levels", **backend}


@dataclass(frozen=True)
class RoiOutcome:
    """What a worker reports back: small, so memory stays flat however many ROIs run."""

    case_id: str
    key: str
    reader: str
    status: str  # computed | cached | failed
    reason: str = ""
    seconds: float = 0.0


def extract_roi(image: str | Path | sitk.Image, mask: str | Path | sitk.Image, label: int | None,
                params: Mapping[str, Any], crop: bool = True, fast: bool = True,
                resample_masks: bool = False, backend: str = "numpy",
                device: str = "auto") -> tuple[dict[str, float], dict[str, str]]:
    """Features ({`original_glcm_Contrast`: value}) and diagnostics of one ROI; RoiError if incomplete.

    `label` None means the mask's only label (as the manifest allows without `mask_label`). `crop` and `fast`
    (radfuse's kernels: `feature_classes`) are radfuse's speed-ups; both leave the values as they are
    (to rounding); `backend="torch"` computes GLCM on a torch `device` (`torch_glcm`). The mask reaches
    PyRadiomics on the image's grid (`_on_image_grid`); `resample_masks` allows nearest-neighbour resampling there.
    """
    image_node = _read_image(str(image)) if not isinstance(image, sitk.Image) else image
    mask_node = _read_image(str(mask)) if not isinstance(mask, sitk.Image) else mask
    mask_node = _on_image_grid(mask_node, image_node, resample_masks, mask, params.get("setting") or {})
    label = _only_label(mask_node, mask) if label is None else int(label)
    how = "off"
    if crop:
        settings = dict(params.get("setting") or {})
        image_node, mask_node, how = crop_to_roi(image_node, mask_node, int(label), settings, image_types(params))
    try:
        extractor = _extractor(json.dumps(params, sort_keys=True), bool(fast), backend, device)
        with scipy_shims_for(image_types(params)):
            result = extractor.execute(image_node, mask_node, label=int(label))
    except (ValueError, RuntimeError, AssertionError) as error:
        raise RoiError(f"PyRadiomics rejected the ROI: {error}") from error
    features, diagnostics = split_result(result)
    missing = missing_outputs(params, list(features))
    if missing:
        raise RoiError(f"no features for {', '.join(missing)} (ROI too small for the filter or its settings)")
    diagnostics["diagnostics_radfuse_crop"] = how
    return features, diagnostics


def _on_image_grid(mask: sitk.Image, image: sitk.Image, resample: bool, source: object,
                   settings: Mapping[str, Any]) -> sitk.Image:
    """The mask on the image's own array grid, by the validator's rule and tolerance (one rule, one place).

    A mask on another grid is an error, unless `resample` (nearest-neighbour onto the image grid) or unless the
    params file itself asks PyRadiomics to deal with it (`correctMask`, `geometryTolerance`): then PyRadiomics gets
    the mask as stored, as its documentation says.
    """
    from radfuse.data.io import GeometryMismatch, align_mask

    try:
        return align_mask(mask, image, resample=resample)
    except GeometryMismatch as error:
        if settings.get("correctMask") or settings.get("geometryTolerance") is not None:
            return mask
        where = "" if isinstance(source, sitk.Image) else f" (mask {source})"
        raise RoiError(f"geometry mismatch: {error}{where}; export the mask on the image's grid, or opt in to "
                       "nearest-neighbour resampling (data.resample_masks=true)") from error


def _only_label(mask: sitk.Image, source: object) -> int:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask, sitk.sitkUInt32))
    labels = list(stats.GetLabels())
    if len(labels) != 1:
        raise RoiError(f"mask {source} holds labels {labels}: give this ROI's label in the manifest's mask_label"
                       if labels else f"mask {source} is empty: segment the ROI or drop the row")
    return int(labels[0])


@functools.lru_cache(maxsize=4)
def _extractor(params_json: str, fast: bool = True, backend: str = "numpy", device: str = "auto"):  # noqa: ANN202
    from radfuse.extract.extractor import radfuse_extractor

    params = json.loads(params_json)
    quiet_pyradiomics()
    return radfuse_extractor(params, fast=fast, backend=backend, device=device)


@functools.lru_cache(maxsize=8)
def _read_image(path: str) -> sitk.Image:
    """NIfTI / NRRD / MHA file or DICOM series folder (radfuse.data.io); read once per scan task (the scan and
    its mask files; cleared after each task, so a worker holds one scan at a time)."""
    from radfuse.data.io import ImageReadError
    from radfuse.extract.scan_reader import read_scan

    try:
        return read_scan(path)
    except ImageReadError as error:
        raise RoiError(f"cannot read {path}: {error}") from error


@contextlib.contextmanager
def one_thread_each() -> Iterator[None]:
    """ITK and BLAS on one thread inside the block (measured on 2 busy cores: eigvals 71 s with OpenBLAS threads
    vs 1.4 s with one; ITK filters on demo ROIs 6-60 % faster single-threaded on the busy machine)."""
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with _thread_pools().limit(limits=1):
            yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


_POOLS: list = []  # [(number of imported modules when scanned, ThreadpoolController)]


def _thread_pools() -> ThreadpoolController:
    """The process's BLAS / OpenMP thread pools; rescanned only after new modules were imported (a scan of the
    loaded libraries took 3.4 ms per scan task, more than a demo ROI's GLCM)."""
    if not _POOLS or _POOLS[0][0] != len(sys.modules):
        _POOLS[:] = [(len(sys.modules), ThreadpoolController())]
    return _POOLS[0][1]


def run_roi_task(task: Roi, params: Mapping[str, Any], cache_root: str,
                 options: ExtractOptions = ExtractOptions()) -> RoiOutcome:
    """Reuse the cached result of one ROI, or extract and cache it (failures too, with their reason)."""
    return run_scan_task([task], params, cache_root, options)[0]


def run_scan_task(tasks: list[Roi], params: Mapping[str, Any], cache_root: str,
                  options: ExtractOptions = ExtractOptions()) -> list[RoiOutcome]:
    """Worker entry: the ROIs of one scan in a row (its image read once), each from the cache or extracted."""
    cache = RoiCache(cache_root)
    outcomes = []
    try:
        with one_thread_each():
            for task in tasks:
                outcomes.append(_one_roi(task, params, cache, options))
    finally:
        _read_image.cache_clear()  # the next scan is another one: hold no image between tasks
    return outcomes


def _one_roi(task: Roi, params: Mapping[str, Any], cache: RoiCache, options: ExtractOptions) -> RoiOutcome:
    if cache.has(task.key):
        record = cache.get(task.key)
        if "error" not in record or not options.retry_failed:
            return RoiOutcome(task.case_id, task.key, task.reader, "cached" if "error" not in record else "failed",
                              record.get("error", ""))
    start = time.perf_counter()
    try:
        features, diagnostics = extract_roi(task.image, task.mask, task.label, params, options.crop,
                                            options.fast_kernels, options.resample_masks, options.backend,
                                            options.device)
    except RoiError as error:
        cache.put(task.key, {"error": str(error)})
        return RoiOutcome(task.case_id, task.key, task.reader, "failed", str(error), time.perf_counter() - start)
    cache.put(task.key, {"features": features, "diagnostics": diagnostics})
    return RoiOutcome(task.case_id, task.key, task.reader, "computed", "", time.perf_counter() - start)
