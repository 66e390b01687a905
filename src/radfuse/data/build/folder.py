"""The folder layout: one folder per patient holding its image (a DICOM series folder or a NIfTI / NRRD / MHA file)
and its masks beside it; grades come from a spreadsheet joined by patient id and ROI name.

    study/P01/ct/            (DICOM series)   or  study/P01/ct.nii.gz
    study/P01/vertebrae.nii.gz                    (a label map: one ROI per label; or one file per structure)

A root that holds an image itself is one patient (named after the folder). A mask that holds several labels gives
one ROI per label, named from its header (TotalSegmentator, Slicer), else from `--label-names verse|totalseg`,
else `label<N>`; a single-label mask is named after its file (`vertebrae_L1.nii.gz` -> L1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from radfuse.data.build.common import Build, BuildError, is_mask_file, rois_of_mask

IMAGE_PATTERNS = ("ct.nii.gz", "ct.nii", "image.nii.gz", "image.nii", "ct.nrrd", "ct.mha", "*/")
MASK_PATTERNS = ("*.nii.gz", "*.nii", "*.nrrd", "*.mha")


def is_dicom_series(folder: Path) -> bool:
    return folder.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def find_image(patient_dir: Path, patterns: Sequence[str] = IMAGE_PATTERNS) -> Path | None:
    """The first match of `patterns` in `patient_dir`: a file, or (a pattern ending in '/') a DICOM series folder."""
    for pattern in patterns:
        folders = pattern.endswith("/")
        for match in sorted(patient_dir.glob(pattern.rstrip("/"))):
            if (folders and is_dicom_series(match)) or (not folders and is_mask_file(match)):
                return match
    return None


def patient_dirs(root: Path, image_patterns: Sequence[str]) -> list[Path]:
    """The patient folders under `root`, or [root] when root holds an image file itself."""
    if not root.is_dir():
        raise BuildError(f"{root} is not a folder: pass the folder that holds one folder per patient")
    files_only = [p for p in image_patterns if not p.endswith("/")]
    if find_image(root, files_only) is not None:
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def build_folder(root: str | Path, image_patterns: Sequence[str] = IMAGE_PATTERNS,
                 mask_patterns: Sequence[str] = MASK_PATTERNS, label_names: dict[int, str] | None = None,
                 select: Sequence[str] | None = None) -> Build:
    """ROIs of every patient folder under `root` (no grades yet: `join_grades`)."""
    build = Build()
    root = Path(root)
    for patient_dir in patient_dirs(root, image_patterns):
        patient = patient_dir.name
        image = find_image(patient_dir, image_patterns)
        if image is None:
            build.skip(patient, patient_dir, f"no image: nothing matches {list(image_patterns)} (a pattern ending "
                                             "in '/' is a DICOM series folder); set --image")
            continue
        masks = mask_files(patient_dir, mask_patterns, exclude=image)
        if not masks:
            build.skip(patient, patient_dir, f"no mask: nothing matches {list(mask_patterns)}; set --masks")
            continue
        for mask in masks:
            rois_of_mask(build, patient, image, mask, label_names, select)
    return build


def mask_files(folder: Path, patterns: Sequence[str], exclude: Path | None = None) -> list[Path]:
    found = {m for pattern in patterns for m in folder.glob(pattern) if is_mask_file(m)}
    if exclude is not None:
        found.discard(exclude)
    return sorted(found)
