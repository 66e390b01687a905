"""Image IO through SimpleITK, in physical space.

Images and masks are matched by their physical voxel grids, never by array index: a mask stored with flipped or
permuted axes on the same grid as its image is reoriented losslessly; a mask on another grid is a geometry
mismatch unless resampling was explicitly asked for.

Images are read in full or refused: SimpleITK reads a truncated NIfTI without an error (the missing voxels become
zeros) and reads NaN voxels of a float NIfTI as 0, so `read_image` checks the file first (`image_integrity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radfuse.data.image_integrity import IncompleteImage, check_image_file

# Relative tolerance on spacing and on origin offsets (as a fraction of the voxel size).
GEOMETRY_TOLERANCE = 1e-3


class ImageReadError(OSError):
    """An image or mask that cannot be read."""


class GeometryMismatch(ValueError):
    """A mask that does not lie on its image's voxel grid."""


def read_image(path: str | Path) -> sitk.Image:
    """Read a NIfTI / NRRD / MHA file or a DICOM series folder."""
    path = Path(path)
    if path.is_dir():
        return _read_dicom_series(path)
    if not path.is_file():
        raise ImageReadError(f"{path} does not exist")
    try:
        nan_at = check_image_file(path)
    except IncompleteImage as err:
        raise ImageReadError(str(err)) from err
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise ImageReadError(f"{path} cannot be read by SimpleITK: {_first_line(err)}") from err
    return _with_nan(image, nan_at) if nan_at is not None and nan_at.size else image


def _with_nan(image: sitk.Image, nan_at: np.ndarray) -> sitk.Image:
    """Put back the NaN voxels that ITK's NIfTI reader turns into 0 (the validator must see them)."""
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind != "f" or image.GetNumberOfComponentsPerPixel() != 1 or nan_at.max() >= array.size:
        return image
    array.reshape(-1)[nan_at] = np.nan
    restored = sitk.GetImageFromArray(array)
    restored.CopyInformation(image)
    for key in image.GetMetaDataKeys():
        restored.SetMetaData(key, image.GetMetaData(key))
    return restored


def read_header(path: str | Path) -> "Geometry":
    """Geometry of an image without reading its voxels (a DICOM folder is read whole)."""
    path = Path(path)
    if path.is_dir():
        return Geometry.of(read_image(path))
    if not path.is_file():
        raise ImageReadError(f"{path} does not exist")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ImageReadError(f"{path} cannot be read by SimpleITK: {_first_line(err)}") from err
    return Geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def _read_dicom_series(folder: Path) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder} holds no DICOM series")
    if len(series) > 1:
        raise ImageReadError(f"{folder} holds {len(series)} DICOM series; put each series in its own folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise ImageReadError(f"{folder}: DICOM series cannot be read: {_first_line(err)}") from err


def write_image(image: sitk.Image, path: str | Path) -> Path:
    """Write by extension (.nii.gz, .nii, .nrrd, .mha); the file appears whole or not at all."""
    from radfuse.artifacts import atomic_path

    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    with atomic_path(path) as tmp:
        target = tmp.with_name(tmp.name + suffix)  # SimpleITK picks the writer from the extension
        sitk.WriteImage(image, str(target), useCompression=True)
        target.replace(tmp)
    return path


@dataclass(frozen=True)
class Geometry:
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def index_to_physical(self) -> np.ndarray:
        """4x4 affine from (i, j, k) index to physical (x, y, z) mm."""
        dim = len(self.size)
        matrix = np.array(self.direction).reshape(dim, dim) * np.array(self.spacing)
        affine = np.eye(4)
        affine[:dim, :dim] = matrix
        affine[:dim, 3] = self.origin
        return affine

    def describe(self) -> str:
        return (f"size {tuple(self.size)}, spacing {tuple(round(s, 4) for s in self.spacing)}, "
                f"origin {tuple(round(o, 2) for o in self.origin)}")


def grid_permutation(image: Geometry, mask: Geometry, tol: float = GEOMETRY_TOLERANCE):
    """If `mask` covers exactly `image`'s voxel grid with permuted/flipped axes, return (axes, flips).

    axes[i] is the mask axis that image axis i runs along; flips[i] is True when it runs backwards. None if the
    grids differ. Works on index-space affines, so it is exact up to `tol` of a voxel.
    """
    dim = len(image.size)  # 2D or 3D
    if len(mask.size) != dim:
        return None
    index_map = np.linalg.inv(mask.index_to_physical()) @ image.index_to_physical()  # image index -> mask index
    linear, offset = index_map[:dim, :dim], index_map[:dim, 3]
    rounded = np.round(linear)
    if np.abs(linear - rounded).max() > tol or not _is_signed_permutation(rounded):
        return None
    axes = [int(np.flatnonzero(rounded[:, i])[0]) for i in range(dim)]
    flips = [bool(rounded[axes[i], i] < 0) for i in range(dim)]
    for i, (axis, flip) in enumerate(zip(axes, flips)):
        expected = (mask.size[axis] - 1) if flip else 0.0
        if abs(offset[axis] - expected) > tol or mask.size[axis] != image.size[i]:
            return None
    return axes, flips


def _is_signed_permutation(matrix: np.ndarray) -> bool:
    return bool((np.abs(matrix).sum(axis=0) == 1).all() and (np.abs(matrix).sum(axis=1) == 1).all())


def align_mask(mask: sitk.Image, image: sitk.Image, resample: bool = False) -> sitk.Image:
    """Return `mask` on `image`'s grid: unchanged, losslessly reoriented, or (opt-in) resampled nearest."""
    image_geo, mask_geo = Geometry.of(image), Geometry.of(mask)
    match = grid_permutation(image_geo, mask_geo)
    if match is not None:
        axes, flips = match
        if axes == sorted(axes) and not any(flips):
            aligned = sitk.Image(mask)
        else:
            aligned = sitk.GetImageFromArray(_permute_array(sitk.GetArrayFromImage(mask), axes, flips))
        aligned.CopyInformation(image)
        return aligned
    if resample:
        return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    raise GeometryMismatch(
        f"mask grid ({mask_geo.describe()}) is not the image grid ({image_geo.describe()})"
    )


def _permute_array(array_zyx: np.ndarray, axes: list[int], flips: list[bool]) -> np.ndarray:
    """Reindex a mask array (numpy z,y,x order) so that it follows the image's index axes."""
    array_xyz = array_zyx.T  # (z,) y, x -> x, y(, z)
    out = np.transpose(array_xyz, axes)
    for i, flip in enumerate(flips):
        if flip:
            out = np.flip(out, axis=i)
    return np.ascontiguousarray(out.T)


def mask_labels(mask: sitk.Image) -> list[int]:
    """Non-zero labels present in a mask."""
    values = np.unique(sitk.GetArrayViewFromImage(mask))
    return [int(v) for v in values if v != 0]


def select_label(mask: sitk.Image, label: int | None) -> sitk.Image:
    """Binary uint8 mask of one label (or of every non-zero voxel when label is None)."""
    array = sitk.GetArrayViewFromImage(mask)
    binary = (array != 0) if label is None else (array == label)
    out = sitk.GetImageFromArray(binary.astype(np.uint8))
    out.CopyInformation(mask)
    return out


def split_components(binary_mask: sitk.Image, min_voxels: int = 1) -> sitk.Image:
    """Label map with one label per connected component (26-connectivity), largest first."""
    components = sitk.ConnectedComponent(binary_mask, True)
    return sitk.RelabelComponent(components, minimumObjectSize=min_voxels, sortByObjectSize=True)


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
