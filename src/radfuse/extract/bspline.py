"""PyRadiomics' `resampleImage` with the image's cubic B-spline interpolation done by separable NumPy passes.

On the liu2025 demo ROIs the B-spline resampling of the image was the largest single cost of an extraction (~25 of
~90 ms per ROI, bench/RESULTS.md): ITK's `BSplineInterpolateImageFunction` evaluates 64 coefficients per output
voxel with per-call bookkeeping. PyRadiomics' resampling grid has the mask's direction and axis-aligned spacing,
so where the image has that same direction the interpolation is a tensor product: four taps along x, then y, then z.

`resample_image` builds PyRadiomics' grid with PyRadiomics' own arithmetic (`imageoperations.resampleImage`,
BSD-3: same bounding box check, spacing rules, size and origin), resamples the mask with ITK exactly as PyRadiomics
does (nearest neighbour), and computes the image as ITK does:

- coefficients: `BSplineDecompositionImageFilter` (ITK 5.4, spline order 3, mirror boundaries, tolerance 1e-10)
  operation for operation, the same recursions along x, y, z (identical coefficients, tested bit for bit);
- evaluation: `BSplineInterpolateImageFunction`'s support (floor(x) - 1 .. + 2), weights and mirror rule, points
  outside the image buffer (continuous index outside [-0.5, size - 0.5)) set to 0 as ResampleImageFilter's
  default; the 64 products are summed per axis instead of in ITK's order, so values differ by rounding only
  (~1e-16 relative, tested).

Only where that holds: a scalar floating-point image, sitkBSpline, the image's direction equal to the mask's, an
interpolating branch of PyRadiomics (spacing changes), and not an integer-valued image whose output voxels fall on
its voxel centres (values there are the input's integers up to rounding, i.e. on bin edges, where a rounding-level
difference could move a voxel to the next bin). Everything else goes
to PyRadiomics' `resampleImage` unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

POLE = math.sqrt(3.0) - 2.0
TOLERANCE = 1e-10  # ITK's default for BSplineDecompositionImageFilter
HORIZON = int(math.ceil(math.log(TOLERANCE) / math.log(abs(POLE))))
FLOAT_TYPES = {sitk.sitkFloat32: np.float32, sitk.sitkFloat64: np.float64}


def resample_image(image: sitk.Image, mask: sitk.Image, **kwargs: Any) -> tuple[sitk.Image, sitk.Image]:
    """PyRadiomics' `resampleImage(image, mask, **kwargs)`, with the image interpolated here where it applies."""
    from radiomics import imageoperations

    grid = _pyradiomics_grid(image, mask, kwargs) if _applies(image, mask, kwargs) else None
    if grid is None:
        return imageoperations.resampleImage(image, mask, **kwargs)
    spacing, size, origin, direction = grid
    rif = sitk.ResampleImageFilter()
    rif.SetOutputSpacing(spacing)
    rif.SetOutputDirection(direction)
    rif.SetSize(size)
    rif.SetOutputOrigin(origin)
    rif.SetOutputPixelType(mask.GetPixelID())
    rif.SetInterpolator(sitk.sitkNearestNeighbor)
    resampled_mask = rif.Execute(mask)
    values = sitk.GetArrayViewFromImage(image)
    if _on_input_nodes(image, resampled_mask) and np.array_equal(values, np.round(values)):
        return imageoperations.resampleImage(image, mask, **kwargs)  # integer values on input nodes: ITK's
    values = bspline_resample(values, image, resampled_mask)
    resampled = sitk.GetImageFromArray(values.astype(FLOAT_TYPES[image.GetPixelID()], copy=False))
    resampled.CopyInformation(resampled_mask)
    return resampled, resampled_mask


def _applies(image: sitk.Image, mask: sitk.Image, kwargs: dict) -> bool:
    interpolator = kwargs.get("interpolator", sitk.sitkBSpline)
    if isinstance(interpolator, str):
        interpolator = getattr(sitk, interpolator, None)
    if interpolator not in (sitk.sitkBSpline, sitk.sitkBSpline3) or image.GetPixelID() not in FLOAT_TYPES:
        return False
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != mask.GetDimension():
        return False
    if not np.array_equal(np.array(image.GetDirection()), np.array(mask.GetDirection())):
        return False
    return True


def _on_input_nodes(image: sitk.Image, grid: sitk.Image) -> bool:
    """True when some output voxel centre falls on an input voxel centre along every axis."""
    start = np.array(image.TransformPhysicalPointToContinuousIndex(grid.GetOrigin()))
    ratio = np.array(grid.GetSpacing()) / np.array(image.GetSpacing())
    for axis in range(image.GetDimension()):
        x = start[axis] + ratio[axis] * np.arange(grid.GetSize()[axis])
        if not np.any(np.abs(x - np.round(x)) < 1e-6):
            return False
    return True


def _pyradiomics_grid(image: sitk.Image, mask: sitk.Image, kwargs: dict):  # noqa: ANN202
    """(spacing, size, origin, direction) of PyRadiomics' resampling grid; None for its mask-only branch.

    PyRadiomics 3.1 `resampleImage` (BSD-3, radiomics/imageoperations.py), its arithmetic unchanged."""
    from radiomics import imageoperations

    resampled_spacing = kwargs["resampledPixelSpacing"]
    pad_distance = kwargs.get("padDistance", 5)
    mask_spacing = np.array(mask.GetSpacing())
    image_spacing = np.array(image.GetSpacing())
    nd = len(mask_spacing)
    if len(resampled_spacing) != nd:
        return None  # PyRadiomics' own assertion message
    resampled_spacing = np.array(resampled_spacing)
    resampled_spacing = np.where(resampled_spacing == 0, mask_spacing, resampled_spacing)
    bb = imageoperations._checkROI(image, mask, **kwargs)  # raises PyRadiomics' ValueError for a bad ROI
    mask_size = np.array(mask.GetSize())
    resampled_spacing = np.where(bb[nd:] != 1, resampled_spacing, mask_spacing)
    if np.allclose(image_spacing, resampled_spacing):
        return None  # PyRadiomics then only resamples the mask onto the image
    ratio = mask_spacing / resampled_spacing
    lower = np.floor((bb[:nd] - 0.5) * ratio - pad_distance)
    upper = np.ceil((bb[:nd] + bb[nd:] - 0.5) * ratio + pad_distance)
    max_upper = np.ceil(mask_size * ratio) - 1
    lower = np.where(lower < 0, 0, lower)
    upper = np.where(upper > max_upper, max_upper, upper)
    size = np.array(upper - lower + 1, dtype="int").tolist()
    original_lower = lower / ratio
    origin_index = np.array(.5 * (resampled_spacing - mask_spacing) / mask_spacing)
    origin = mask.TransformContinuousIndexToPhysicalPoint(origin_index + original_lower)
    return resampled_spacing, size, origin, np.array(mask.GetDirection())


def bspline_coefficients(values: np.ndarray, boxes: list[slice] | None = None) -> np.ndarray:
    """ITK's BSplineDecompositionImageFilter (order 3) of an array in (z, y, x) order, x first as in ITK.

    `boxes` (numpy axis order): return only that box. Each line's recursion is independent of the others, so an
    axis that is done can be cut to its box before the next axis runs: the coefficients in the box are the
    whole image's, bit for bit, for a fraction of the work when the box is small."""
    c = np.array(values, dtype=np.float64)
    for axis in reversed(range(c.ndim)):
        c = _decompose_along(c, axis)
        if boxes is not None:
            c = c[(slice(None),) * axis + (boxes[axis],)]
    return c


def _decompose_along(c: np.ndarray, axis: int) -> np.ndarray:
    n = c.shape[axis]
    if n == 1:  # ITK: "Required by mirror boundaries", the line is left as it is
        return c
    line = np.moveaxis(c, axis, 0).copy()  # each line[m] contiguous
    line *= (1.0 - POLE) * (1.0 - 1.0 / POLE)
    _initial_causal(line, n)
    for m in range(1, n):
        line[m] += POLE * line[m - 1]
    line[n - 1] = (POLE / (POLE * POLE - 1.0)) * (POLE * line[n - 2] + line[n - 1])
    for m in range(n - 2, -1, -1):
        line[m] = POLE * (line[m + 1] - line[m])
    return np.moveaxis(line, 0, axis)


def _initial_causal(line: np.ndarray, n: int) -> None:
    z = POLE
    zn = z
    if HORIZON < n:  # ITK's accelerated loop
        total = line[0].copy()
        for m in range(1, HORIZON):
            total += zn * line[m]
            zn *= z
        line[0] = total
        return
    iz = 1.0 / z  # ITK's full loop
    z2n = math.pow(z, float(n - 1))
    total = line[0] + z2n * line[n - 1]
    z2n *= z2n * iz
    for m in range(1, n - 1):
        total = total + (zn + z2n) * line[m]
        zn *= z
        z2n *= iz
    line[0] = total / (1.0 - zn * zn)


def bspline_resample(values: np.ndarray, image: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """`values` (the array of `image`) interpolated by cubic B-spline at every voxel centre of `grid` (same
    direction as `image`): (z, y, x) array of `grid`'s size, 0 outside the image buffer."""
    nd = image.GetDimension()
    start = np.array(image.TransformPhysicalPointToContinuousIndex(grid.GetOrigin()))
    ratio = np.array(grid.GetSpacing()) / np.array(image.GetSpacing())
    taps, weights, inside = [], [], []
    for axis in range(nd):  # x, y, z
        n = image.GetSize()[axis]
        x = start[axis] + ratio[axis] * np.arange(grid.GetSize()[axis])
        ok = (x >= -0.5) & (x < n - 0.5)
        index, w = _support(np.where(ok, x, 0.0), n)
        taps.append(index)
        weights.append(w)
        inside.append(ok)
    # only the coefficients some output voxel reaches (a vertebra's grid in a whole CT is a small box)
    boxes = [slice(int(taps[axis].min()), int(taps[axis].max()) + 1) for axis in reversed(range(nd))]
    out = bspline_coefficients(values, boxes)
    for axis in range(nd):  # x, y, z = numpy axes nd-1 .. 0
        numpy_axis = nd - 1 - axis
        index, w = taps[axis] - taps[axis].min(), weights[axis]
        shape = [1] * out.ndim
        shape[numpy_axis] = len(w)
        terms = [np.take(out, index[:, t], axis=numpy_axis) * w[:, t].reshape(shape) for t in range(4)]
        out = ((terms[0] + terms[1]) + terms[2]) + terms[3]
    outside = ~np.logical_and.reduce(np.meshgrid(*reversed(inside), indexing="ij"))
    out[outside] = 0.0
    return out


def _support(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ITK's 4 evaluation indices (mirrored) and weights for continuous indices x along an axis of length n."""
    first = np.floor(x).astype(np.int64) - 1
    w = x - (first + 1).astype(np.float64)
    w3 = (1.0 / 6.0) * w * w * w
    w0 = (1.0 / 6.0) + 0.5 * w * (w - 1.0) - w3
    w2 = w + w0 - 2.0 * w3
    w1 = 1.0 - w0 - w2 - w3
    index = first[:, None] + np.arange(4)[None, :]
    if n == 1:
        index = np.zeros_like(index)
    else:
        index = np.where(index < 0, -index, index)
        index = np.where(index > n - 1, (n - 1) - (index - (n - 1)), index)
    return index, np.stack([w0, w1, w2, w3], axis=1)
