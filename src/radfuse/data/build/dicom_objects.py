"""DICOM-SEG and RTSTRUCT sources: find, per patient folder, each segmentation object and the CT series it refers
to, and write its ROIs as NIfTI masks on that series' voxel grid (read the way every stage reads the series).

Each ROI becomes its own binary mask file (`<masks>/<patient>/<object>_<roi>.nii.gz`): segments and structures
may overlap (a tumour inside an organ), which one label map cannot hold. The series stays the manifest's image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import SimpleITK as sitk

from radfuse.data.build.common import MIN_VOXELS, Build, BuildError, Roi, safe_id, wanted
from radfuse.data.build.labels import roi_name
from radfuse.data.io import ImageReadError, read_image, write_image

SEG, RTSTRUCT = "SEG", "RTSTRUCT"


@dataclass
class DicomObject:
    path: Path
    modality: str
    referenced_series: str | None


def scan_patient(folder: Path) -> tuple[dict[str, Path], list[DicomObject]]:
    """({series uid: folder} of the image series, [SEG / RTSTRUCT objects]) found under `folder`."""
    import pydicom

    series: dict[str, Path] = {}
    objects: list[DicomObject] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not a DICOM file (a README, a NIfTI): not ours to judge
            continue
        modality = str(ds.get("Modality", ""))
        if modality in (SEG, RTSTRUCT):
            objects.append(DicomObject(path, modality, _referenced_series(ds)))
        elif "SeriesInstanceUID" in ds:
            series.setdefault(str(ds.SeriesInstanceUID), path.parent)
    return series, objects


def _referenced_series(ds) -> str | None:
    if "ReferencedSeriesSequence" in ds and len(ds.ReferencedSeriesSequence):  # DICOM-SEG
        return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    try:  # RTSTRUCT
        frame = ds.ReferencedFrameOfReferenceSequence[0]
        return str(frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError):
        return None


def series_uids(folder: Path) -> list[str]:
    """SOPInstanceUIDs of a series folder in the slice order SimpleITK (and so every stage) reads it."""
    import pydicom

    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    return [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]


# A rasteriser: (object file, series folder, image) -> {ROI name: bool array z, y, x on the image grid}
Rasteriser = Callable[[Path, Path, sitk.Image], dict[str, np.ndarray]]


def build_dicom_objects(root: str | Path, modality: str, rasterise: Rasteriser, mask_dir: str | Path,
                        select: Iterable[str] | None = None) -> Build:
    root, mask_dir = Path(root), Path(mask_dir)
    build = Build()
    select = list(select or [])
    if not root.is_dir():
        raise BuildError(f"{root} is not a folder: pass the folder that holds one folder per patient")
    patients = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in patients:
        patient = folder.name
        series, objects = scan_patient(folder)
        objects = [o for o in objects if o.modality == modality]
        if not objects:
            build.skip(patient, folder, f"no {modality} object under this folder")
            continue
        for obj in objects:
            image_dir = series.get(obj.referenced_series or "")
            if image_dir is None:
                build.skip(patient, obj.path, f"the {modality} refers to series {obj.referenced_series}, which is "
                                              "not under this patient's folder: put the CT series beside it")
                continue
            if obj.path.parent == image_dir:
                build.skip(patient, obj.path, f"the {modality} lies in the CT series folder {image_dir}: move it to "
                                              "its own folder (a series folder must hold one series)")
                continue
            _add_rois(build, patient, obj, image_dir, rasterise, mask_dir, select)
    return build


def _add_rois(build: Build, patient: str, obj: DicomObject, image_dir: Path, rasterise: Rasteriser,
              mask_dir: Path, select: list[str]) -> None:
    try:
        image = read_image(image_dir)
        masks = rasterise(obj.path, image_dir, image)
    except (ImageReadError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as err:
        build.skip(patient, obj.path, f"cannot rasterise the {obj.modality} onto {image_dir}: {err}")
        return
    for raw, array in masks.items():
        if not wanted(raw, select):
            continue
        name = roi_name(raw)
        count = int(array.sum())
        if count < MIN_VOXELS:
            build.skip(f"{patient}/{name}", obj.path, f"{count} voxel(s) on the image grid, fewer than {MIN_VOXELS}")
            continue
        mask = sitk.GetImageFromArray(array.astype(np.uint8))
        mask.CopyInformation(image)
        path = write_image(mask, mask_dir / safe_id(patient) / f"{safe_id(obj.path.stem)}_{safe_id(name)}.nii.gz")
        build.rois.append(Roi(patient, name, image_dir, path))
