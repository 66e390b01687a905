"""The manifest checks that open the files: each image read in full (complete, and in HU when it is CT), each mask
(readable, whole-numbered, on the image's grid, its ROI present, big enough and free of NaN), and one image used by
two patients (a leak between folds or cohorts).

A row's image is read once for the row and kept for the next row when it is the same file (ROIs of one scan sit on
consecutive rows), so a cohort is read once.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radfuse.data import io
from radfuse.data.manifest import CASE_ID, IMAGE, MASK, MASK_LABEL, PATIENT_ID, SECOND_MASK_COLUMNS
from radfuse.data.problems import ERROR, WARNING, Problem, case_text

MODALITIES = ("ct", "other")
MIN_ROI_VOXELS = 8              # fewer voxels than this and radiomics (and a crop) have nothing to measure
CT_HU_RANGE = (-1024.0, 3071.0)  # the 12-bit HU scale of CT
MAX_OUT_OF_RANGE = 0.01          # a few voxels beyond it (metal, extended scales) are fine, 1 % of the ROI is not
NOT_CT_FIX = "for data that are not CT in HU, pass --modality other (data.modality=other)"


@dataclass(frozen=True)
class RowContext:
    case: str
    row: int
    manifest_file: str
    resample_masks: bool
    modality: str
    margin: int | None = None  # the crop stage's data.margin, for the message of an ROI cut by the scan's edge

    def problem(self, column: str, file: object, message: str, fix: str, severity: str = ERROR) -> Problem:
        return Problem(self.case, column, str(file), message, fix, row=self.row, severity=severity)


@dataclass
class LoadedImage:
    image: sitk.Image
    array: np.ndarray     # z, y, x view of `image`'s voxels
    not_in_hu: str | None  # why a CT image is not in HU, or None


class LastImage:
    """The image of the previous row, kept while the next rows use the same file."""

    def __init__(self, modality: str):
        self.modality = modality
        self.path: str | None = None
        self.value: LoadedImage | Exception | None = None

    def get(self, path: object) -> LoadedImage | Exception:
        if str(path) != self.path:
            self.path, self.value = str(path), self._load(path)
        return self.value

    def _load(self, path: object) -> LoadedImage | Exception:
        try:
            image = io.read_image(path)
        except (io.ImageReadError, TypeError) as err:
            return err
        array = sitk.GetArrayViewFromImage(image)
        return LoadedImage(image, array, _not_in_hu(array, image) if self.modality == "ct" else None)


def _not_in_hu(array: np.ndarray, image: sitk.Image) -> str | None:
    """CT in HU holds air (-1000 HU); an image without a negative value holds stored values, not HU."""
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size and finite.min() >= 0:
        return (f"no voxel below 0 (values {finite.min():.0f} to {finite.max():.0f}, "
                f"{image.GetPixelIDTypeAsString()}): the image is not in HU (stored values without the rescale slope "
                "and intercept?)")
    return None


def row_problems(row: pd.Series, ctx: RowContext, images: LastImage) -> list[Problem]:
    """Every problem of one row's files."""
    loaded = images.get(row[IMAGE])
    if isinstance(loaded, Exception):
        return [ctx.problem(IMAGE, row[IMAGE], f"image unreadable: {loaded}",
                            "fix the path (relative to the manifest's folder) or re-export the image")]
    problems = []
    if loaded.not_in_hu:
        problems.append(ctx.problem(IMAGE, row[IMAGE], loaded.not_in_hu,
                                    f"export the image in HU (stored value x slope + intercept); {NOT_CT_FIX}"))
    label, label_problems = _mask_label(ctx, row.get(MASK_LABEL))
    problems += label_problems
    for column in (MASK, *SECOND_MASK_COLUMNS):
        path = row.get(column)
        if column != MASK and (path is None or (isinstance(path, float) and math.isnan(path)) or path == ""):
            continue
        problems += _mask_problems(ctx, column, path, loaded, label, row[IMAGE])
    return problems


def _mask_label(ctx: RowContext, value: object) -> tuple[int | None, list[Problem]]:
    if value is None or pd.isna(value):
        return None, []
    try:
        if float(value) != int(float(value)):
            raise ValueError
        return int(float(value)), []
    except (TypeError, ValueError):
        return None, [ctx.problem(MASK_LABEL, ctx.manifest_file, f"mask_label {value!r} is not an integer",
                                  "write the integer label of this ROI in the mask, or leave it empty")]


def _mask_problems(ctx: RowContext, column: str, path: object, loaded: LoadedImage, label: int | None,
                   image_path: object) -> list[Problem]:
    try:
        mask = io.read_image(path)
    except (io.ImageReadError, TypeError) as err:
        return [ctx.problem(column, path, f"mask unreadable: {err}",
                            "fix the path (relative to the manifest's folder) or re-export the mask")]
    fractional = _fractional_value(mask)
    if fractional is not None:
        return [ctx.problem(column, path, f"mask holds fractional values (e.g. {fractional:g}), as a soft or "
                            "linearly resampled segmentation does",
                            "threshold it (e.g. mask >= 0.5) or pass the label map it was made from")]
    try:
        mask = io.align_mask(mask, loaded.image, resample=ctx.resample_masks)
    except io.GeometryMismatch as err:
        return [ctx.problem(column, path, f"geometry mismatch: {err}",
                            "export the mask on the image's grid, or opt in to nearest-neighbour resampling "
                            "(data.resample_masks=true / --resample-masks)")]
    problems = _label_content_problems(ctx, column, path, mask, label)
    if problems:
        return problems
    array = sitk.GetArrayViewFromImage(mask)
    roi = (array != 0) if label is None else (array == label)
    problems = _roi_problems(ctx, column, path, loaded, roi, image_path)
    if column == MASK and not any(p.is_error for p in problems):
        problems += _edge_problems(ctx, column, path, loaded.image, roi, label)
    return problems


def _fractional_value(mask: sitk.Image) -> float | None:
    array = sitk.GetArrayViewFromImage(mask)
    if array.dtype.kind != "f":
        return None
    values = np.unique(array)
    fractional = values[~(values == np.round(values))]
    return float(fractional[0]) if fractional.size else None


def _label_content_problems(ctx: RowContext, column: str, path: object, mask: sitk.Image,
                            label: int | None) -> list[Problem]:
    present = io.mask_labels(mask)
    if not present:
        return [ctx.problem(column, path, "empty ROI: the mask has no foreground voxel",
                            "segment the ROI or drop the row")]
    if label is None and len(present) > 1:
        return [ctx.problem(column, path, f"mask holds several labels {present} and no mask_label is given",
                            "set mask_label to the label of this ROI (one row per label)")]
    if label is not None and label not in present:
        return [ctx.problem(MASK_LABEL, path, f"label {label} is absent from the mask (present: {present})",
                            "set mask_label to a label the mask holds")]
    return []


def _roi_problems(ctx: RowContext, column: str, path: object, loaded: LoadedImage, roi: np.ndarray,
                  image_path: object) -> list[Problem]:
    """The ROI's size, then the image's values under it (reported on the image, naming the mask)."""
    count = int(roi.sum())
    if count < MIN_ROI_VOXELS:
        return [ctx.problem(column, path, f"ROI has {count} voxel(s), fewer than {MIN_ROI_VOXELS}",
                            "segment a larger ROI or drop the row (radiomics and crops need at least "
                            f"{MIN_ROI_VOXELS} voxels)")]
    values = loaded.array[roi]
    if values.dtype.kind == "f" and np.isnan(values).any():
        return [ctx.problem(IMAGE, image_path, f"{int(np.isnan(values).sum())} NaN voxel(s) inside the ROI of "
                            f"{column} (of {count})", "re-export the image without NaN (e.g. -1024 HU outside the "
                            "field of view) or correct the mask")]
    if ctx.modality != "ct" or loaded.not_in_hu:
        return []
    low, high = CT_HU_RANGE
    outside = float(((values < low) | (values > high)).mean())
    if outside > MAX_OUT_OF_RANGE:
        return [ctx.problem(IMAGE, image_path, f"{100 * outside:.0f}% of the voxels inside the ROI of {column} lie "
                            f"outside CT's HU range [{low:.0f}, {high:.0f}] (values {values.min():.0f} to "
                            f"{values.max():.0f})", f"export the image in HU; {NOT_CT_FIX}")]
    return []


# ---------------------------------------------------------------------------------------------- field of view
# The patient direction each physical axis points to (LPS, as DICOM and ITK store it): (towards -, towards +).
LPS_NAMES = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))


def scan_faces(roi: np.ndarray, image: sitk.Image) -> list[tuple[str, str]]:
    """The faces of the scan that the ROI touches: (patient direction, voxel index text), e.g. ("superior",
    "z = 111, the last slice"). `roi` is z, y, x as SimpleITK's arrays are. An axis one voxel thick (a single
    slice) has no face to cut along."""
    direction = np.asarray(image.GetDirection(), float).reshape(image.GetDimension(), image.GetDimension())
    faces = []
    for axis in range(roi.ndim):  # SimpleITK axis i is numpy axis ndim - 1 - i
        size = roi.shape[roi.ndim - 1 - axis]
        if size < 2:
            continue
        present = np.flatnonzero(roi.any(axis=tuple(a for a in range(roi.ndim) if a != roi.ndim - 1 - axis)))
        if not present.size:
            continue
        column = direction[:, axis]
        dominant = int(np.argmax(np.abs(column)))
        towards_plus = LPS_NAMES[dominant][1] if column[dominant] > 0 else LPS_NAMES[dominant][0]
        towards_minus = LPS_NAMES[dominant][0] if column[dominant] > 0 else LPS_NAMES[dominant][1]
        letter, unit = (("x", "column"), ("y", "row"), ("z", "slice"))[axis] if axis < 3 else (str(axis), "index")
        if present[0] == 0:
            faces.append((towards_minus, f"{letter} = 0, the first {unit}"))
        if present[-1] == size - 1:
            faces.append((towards_plus, f"{letter} = {size - 1}, the last {unit}"))
    return faces


def _edge_problems(ctx: RowContext, column: str, path: object, image: sitk.Image, roi: np.ndarray,
                   label: int | None) -> list[Problem]:
    """A warning for an ROI that touches the border of the scan: the structure likely goes on outside the field
    of view, so its shape, its radiomics and its crop describe the part inside only."""
    faces = scan_faces(roi, image)
    if not faces:
        return []
    names = [name for name, _ in faces]
    said = (f"the {names[0]} face" if len(names) == 1 else
            f"the {', '.join(names[:-1])} and {names[-1]} faces")
    where = "; ".join(index for _, index in faces)
    roi_text = f"ROI (label {label})" if label is not None else "ROI"
    if ctx.margin is None:
        crop = "a crop margin (data.margin) adds no context beyond that face"
    elif ctx.margin > 0:
        crop = f"its crop's margin (data.margin={ctx.margin} voxels) stops at that face, with no context beyond it"
    else:
        crop = f"its crop (data.margin={ctx.margin}) ends at that face"
    return [ctx.problem(column, path,
                        f"{roi_text} touches {said} of the scan ({where}): the structure may continue outside the "
                        "field of view, so its shape features and radiomics describe only the part inside, and "
                        f"{crop}",
                        "check that the ROI is complete (a scan or segmentation covering all of it), or drop the row "
                        "if it is cut; the run goes on with the cut ROI", severity=WARNING)]


# ---------------------------------------------------------------------------------------------- leaks
def image_leak_problems(frame: pd.DataFrame) -> list[Problem]:
    """Rows whose image file, or a byte-identical copy of it, is also the image of another patient."""
    rows_by_file: dict[str, list[int]] = defaultdict(list)
    for i, (path, patient) in enumerate(zip(frame[IMAGE], frame[PATIENT_ID])):
        if isinstance(path, str) and not pd.isna(patient) and str(patient).strip():
            rows_by_file[os.path.realpath(path)].append(i)
    problems = []
    for file, rows in rows_by_file.items():
        problems += _shared_by_patients(frame, rows, lambda other: f"also the image of patient {other}")
    for files in _identical_files(list(rows_by_file)):
        rows = [i for file in files for i in rows_by_file[file]]
        problems += _shared_by_patients(frame, rows, lambda other: f"the same content as the image of patient {other}",
                                        distinct_files=True)
    return problems


def _shared_by_patients(frame: pd.DataFrame, rows: list[int], says, distinct_files: bool = False) -> list[Problem]:
    patients = {str(frame[PATIENT_ID].iloc[i]) for i in rows}
    if len(patients) < 2:
        return []
    problems = []
    for i in rows:
        mine, path = str(frame[PATIENT_ID].iloc[i]), frame[IMAGE].iloc[i]
        others = [j for j in rows if str(frame[PATIENT_ID].iloc[j]) != mine
                  and (not distinct_files or os.path.realpath(frame[IMAGE].iloc[j]) != os.path.realpath(path))]
        if not others:
            continue
        other = others[0]
        problems.append(Problem(
            case_text(frame[CASE_ID].iloc[i]), PATIENT_ID, str(path),
            f"image of patient {mine} is {says(frame[PATIENT_ID].iloc[other])} (case {frame[CASE_ID].iloc[other]}, "
            f"{frame[IMAGE].iloc[other]})",
            "one scan under two patient ids is a leak between folds or cohorts: correct the patient_id or the image",
            row=i + 2))
    return problems


def _identical_files(files: list[str]) -> list[list[str]]:
    """Groups of distinct files with the same bytes (only files of equal size are hashed)."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for file in files:
        if os.path.isfile(file):
            by_size[os.path.getsize(file)].append(file)
    groups = []
    for same_size in (f for f in by_size.values() if len(f) > 1):
        by_digest: dict[str, list[str]] = defaultdict(list)
        for file in same_size:
            by_digest[_digest(file)].append(file)
        groups += [g for g in by_digest.values() if len(g) > 1]
    return groups


def _digest(file: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(file, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
