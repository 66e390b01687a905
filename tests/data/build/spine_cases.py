"""Small cases cut from the real spine CT (../shared/data/spine-ct), for the builder tests.

Each patient is another crop of the one CT (shifted by a voxel or two), so no two patients share an image file and
every case is small enough to validate in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# z, y, x start and size (numpy order) of the lumbar crop; vertebrae.nii.gz holds L5 (27) ... T11 (33) there
CROP_START, CROP_SIZE = (40, 14, 40), (72, 40, 40)
LUMBAR = {"L1": 31, "L2": 30, "L3": 29, "L4": 28, "L5": 27}


def crop(image: sitk.Image, shift: int = 0) -> sitk.Image:
    z, y, x = CROP_START
    dz, dy, dx = CROP_SIZE
    return image[x + shift: x + shift + dx, y: y + dy, z: z + dz]  # SimpleITK slices x, y, z and keeps geometry


def write_case(spine_ct: Path, folder: Path, shift: int = 0, files=("ct", "vertebrae", "vertebral_bodies")) -> dict:
    """Write the crop of ct / vertebrae / vertebral_bodies into `folder`; {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in files:
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(crop(sitk.ReadImage(str(spine_ct / f"{name}.nii.gz")), shift), str(path), True)
        out[name] = path
    return out


def write_dicom_series(image: sitk.Image, folder: Path, patient_id: str) -> list[pydicom.Dataset]:
    """A CT series (one file per slice, int16 HU, slope 1) with the geometry of `image`; the datasets in z order."""
    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image)
    assert array.min() >= -32768 and array.max() <= 32767
    direction = np.array(image.GetDirection()).reshape(3, 3)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for k in range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, f"{patient_id}^", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.Manufacturer = "", "radfuse-test"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [float(image.GetSpacing()[1]), float(image.GetSpacing()[0])]
        ds.SliceThickness = float(image.GetSpacing()[2])
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = array[k].astype(np.int16).tobytes()
        ds.save_as(ds.filename, enforce_file_format=True)
        datasets.append(ds)
    return datasets
