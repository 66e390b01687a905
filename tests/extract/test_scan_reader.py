"""`read_scan` gives `read_image`'s image (voxels, geometry, NaN handling, errors) with one decompression."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from radfuse.data.io import ImageReadError, read_image
from radfuse.extract.scan_reader import read_scan


def _same(a: sitk.Image, b: sitk.Image) -> None:
    assert sitk.Hash(a) == sitk.Hash(b) and a.GetPixelID() == b.GetPixelID()
    assert (a.GetSize(), a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == \
        (b.GetSize(), b.GetSpacing(), b.GetOrigin(), b.GetDirection())


@pytest.mark.parametrize("pixel_type", [sitk.sitkInt16, sitk.sitkFloat32])
def test_oblique_compressed_nifti_reads_as_read_image_does(tmp_path, pixel_type):
    rng = np.random.default_rng(0)
    array = rng.normal(0, 100, (7, 9, 11))
    if pixel_type == sitk.sitkFloat32:
        array[2, 3, 4] = np.nan  # read_image's NaN handling applies to the copy too
    image = sitk.Cast(sitk.GetImageFromArray(array), pixel_type)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((12.0, -40.0, 3.0))
    angle = 0.3
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, -1))
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(image, str(path))
    _same(read_scan(path), read_image(path))


def test_spine_ct_reads_as_read_image_does(spine_ct):
    _same(read_scan(spine_ct / "ct.nii.gz"), read_image(spine_ct / "ct.nii.gz"))


def test_truncated_file_is_refused_with_its_own_path(tmp_path):
    path = tmp_path / "cut.nii.gz"
    sitk.WriteImage(sitk.Image(20, 20, 20, sitk.sitkInt16), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.nii.gz is truncated"):
        read_scan(path)
    path.write_bytes(gzip.compress(gzip.decompress(data)[:200]))  # complete stream, too few voxels
    with pytest.raises(ImageReadError, match=str(path)):
        read_scan(path)
