"""Read a scan for extraction with one gzip decompression instead of two.

`radfuse.data.io.read_image` checks a `.nii.gz` for truncation and NaN voxels by decompressing it in Python, then
SimpleITK decompresses it again, and ITK's gzip reader is slow: on a demo scan (69 x 69 x 32 int16) 29 ms of which
SimpleITK 25 ms; on the spine CT 133 ms. `read_scan` decompresses once, in streaming, into a temporary `.nii`
(in RAM-backed /dev/shm where there is one) and hands that to the same `read_image`, so the integrity check, the
NaN handling and ITK's own NIfTI geometry rules are unchanged (measured: 5.8 ms and 77 ms, same voxels, geometry
and hash). A cut or corrupt stream gives `check_image_file`'s messages; if the temporary file cannot be written
(no space), the file is read as before.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import SimpleITK as sitk

from radfuse.data.io import ImageReadError, read_image

RAM_FOLDER = Path("/dev/shm")


def read_scan(path: str | Path) -> sitk.Image:
    """`read_image(path)`, faster for `.nii.gz` (module doc); raises `ImageReadError` as it does."""
    path = Path(path)
    if not path.name.lower().endswith(".nii.gz") or not path.is_file():
        return read_image(path)
    folder = str(RAM_FOLDER) if RAM_FOLDER.is_dir() and os.access(RAM_FOLDER, os.W_OK) else None
    fd, tmp = tempfile.mkstemp(prefix="radfuse-scan-", suffix=".nii", dir=folder)
    try:
        try:
            with gzip.open(path, "rb") as stream, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 22)
        except EOFError as err:
            raise ImageReadError(f"{path} is truncated: the gzip stream ends early ({err})") from err
        except (gzip.BadGzipFile, zlib.error) as err:
            raise ImageReadError(f"{path} is corrupt: gzip says {err}") from err
        except OSError:  # no room for the temporary copy: the usual way
            return read_image(path)
        try:
            return read_image(tmp)
        except ImageReadError as err:
            raise ImageReadError(str(err).replace(tmp, str(path))) from err
    finally:
        os.unlink(tmp)
