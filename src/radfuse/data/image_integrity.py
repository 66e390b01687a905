"""Is an image file whole, and what would SimpleITK hide? Checked before every read (`radfuse.data.io.read_image`).

SimpleITK (ITK's NIfTI reader) accepts a NIfTI file that is cut short and fills the missing voxels with zeros, and it
reads NaN voxels of a float NIfTI as 0. So a `.gz` stream is read to its end (a cut stream raises EOFError, a
damaged one a CRC or zlib error), a NIfTI must hold the bytes its header declares (vox_offset + voxels x bytes per
voxel), and the positions of NaN voxels of a float NIfTI are returned so that the reader can put them back.
NRRD and MetaImage readers refuse short files themselves. nibabel is not a dependency: the NIfTI-1 (348-byte) and
NIfTI-2 (540-byte) headers are parsed with `struct`.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NIFTI1_HEADER, NIFTI2_HEADER = 348, 540
FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64
CHUNK = 1 << 22


class IncompleteImage(ValueError):
    """An image file that is cut short or damaged."""


@dataclass(frozen=True)
class NiftiLayout:
    offset: int           # where the voxels start
    voxels: int
    bytes_per_voxel: int
    float_dtype: np.dtype | None

    @property
    def needed(self) -> int:
        return self.offset + self.voxels * self.bytes_per_voxel


def nifti_layout(head: bytes) -> NiftiLayout | None:
    """The voxel layout a NIfTI-1 or NIfTI-2 header declares; None if `head` does not start with one."""
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0] if len(head) >= 4 else 0
        if size == NIFTI1_HEADER and len(head) >= NIFTI1_HEADER:
            datatype, bitpix = struct.unpack(endian + "hh", head[70:74])
            dims = struct.unpack(endian + "8h", head[40:56])
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if size == NIFTI2_HEADER and len(head) >= NIFTI2_HEADER:
            datatype, bitpix = struct.unpack(endian + "hh", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:dims[0] + 1]], dtype=np.int64))
    dtype = np.dtype(endian + FLOAT_TYPES[datatype]) if datatype in FLOAT_TYPES else None
    return NiftiLayout(max(offset, size), voxels, bitpix // 8, dtype)


def check_image_file(path: str | Path) -> np.ndarray | None:
    """Raise `IncompleteImage` for a cut or damaged file; return the flat (z, y, x order) indices of the NaN voxels
    of a float NIfTI, or None for other files."""
    path = Path(path)
    name = path.name.lower()
    compressed, nifti = name.endswith(".gz"), name.endswith((".nii", ".nii.gz"))
    if not compressed and not nifti:
        return None
    if nifti and not compressed:  # the size alone tells a short file; read the voxels only to find NaN
        with path.open("rb") as handle:
            layout = nifti_layout(handle.read(NIFTI2_HEADER))
        if layout is None:
            return None
        _check_length(path, layout, path.stat().st_size)
        if layout.float_dtype is None:
            return None
    scan = _Scan(nifti)
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as stream:
            while block := stream.read(CHUNK):
                scan.feed(block)
    except EOFError as err:
        raise IncompleteImage(f"{path} is truncated: the gzip stream ends early ({err})") from err
    except (gzip.BadGzipFile, zlib.error) as err:
        raise IncompleteImage(f"{path} is corrupt: gzip says {err}") from err
    if scan.layout is not None:
        _check_length(path, scan.layout, scan.length)
        return scan.nan_at()
    return None


def _check_length(path: Path, layout: NiftiLayout, length: int) -> None:
    if length < layout.needed:
        raise IncompleteImage(f"{path} is truncated: its NIfTI header declares {layout.needed} bytes (header and "
                              f"voxels), the file holds {length}")


class _Scan:
    """Streams a file's bytes: total length, the NIfTI layout, and the NaN voxels of float data.

    `read(CHUNK)` returns CHUNK bytes unless the file ends, so the first block holds the whole header."""

    def __init__(self, nifti: bool):
        self.nifti = nifti
        self.length = 0
        self.layout: NiftiLayout | None = None
        self._pending = b""
        self._voxel = 0
        self._nans: list[np.ndarray] = []

    def feed(self, block: bytes) -> None:
        start = self.length
        self.length += len(block)
        if start == 0 and self.nifti:
            self.layout = nifti_layout(block[:NIFTI2_HEADER])
        if self.layout is not None and self.layout.float_dtype is not None:
            self._find_nan(block, start)

    def _find_nan(self, block: bytes, start: int) -> None:
        skip = max(self.layout.offset - start, 0)
        data = self._pending + block[skip:]
        size = self.layout.float_dtype.itemsize
        usable = len(data) - len(data) % size
        values = np.frombuffer(data[:usable], self.layout.float_dtype)
        values = values[:max(self.layout.voxels - self._voxel, 0)]
        self._nans.append(np.flatnonzero(np.isnan(values)) + self._voxel)
        self._voxel += values.size
        self._pending = data[usable:]

    def nan_at(self) -> np.ndarray | None:
        if self.layout is None or self.layout.float_dtype is None:
            return None
        return np.concatenate(self._nans) if self._nans else np.zeros(0, np.int64)
