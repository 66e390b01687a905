import numpy as np
import pytest
import SimpleITK as sitk

from radfuse.data import io


def _image(shape=(5, 6, 7), seed=0):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(size=shape).astype(np.float32))
    image.SetSpacing((0.7, 0.8, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".nii"])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    image = _image()
    path = io.write_image(image, tmp_path / f"ct{suffix}")
    back = io.read_image(path)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert np.allclose(back.GetSpacing(), image.GetSpacing())
    assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4)
    assert np.allclose(back.GetDirection(), image.GetDirection())
    assert io.read_header(path).size == image.GetSize()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_dicom_series_folder_reads_as_one_volume(tmp_path):
    array = np.arange(4 * 8 * 9, dtype=np.int16).reshape(4, 8, 9)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.5, 2.5))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(array.shape[0]):
        slice_ = image[:, :, k]
        for tag, value in {"0020|000e": series_uid, "0020|0013": str(k + 1),
                           "0020|0032": f"0\\0\\{2.5 * k}", "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0008|0060": "CT", "0028|0030": "0.5\\0.5", "0018|0050": "2.5"}.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"{k:03d}.dcm"))
        writer.Execute(slice_)
    volume = io.read_image(tmp_path)
    assert volume.GetSize() == (9, 8, 4)
    assert np.array_equal(sitk.GetArrayFromImage(volume), array)
    assert volume.GetSpacing()[2] == pytest.approx(2.5)


def test_missing_and_unreadable_files_raise_read_errors(tmp_path):
    with pytest.raises(io.ImageReadError, match="does not exist"):
        io.read_image(tmp_path / "nope.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    with pytest.raises(io.ImageReadError, match="cannot be read"):
        io.read_header(junk)
    with pytest.raises(io.ImageReadError, match="no DICOM"):
        io.read_image(tmp_path)


@pytest.mark.parametrize("orient", ["RAS", "LPS", "SRA", "ILP", "PSR"])
def test_mask_with_permuted_or_flipped_axes_is_reoriented_losslessly(orient):
    image = _image()
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=(5, 6, 7)).astype(np.uint8)
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    stored = sitk.DICOMOrient(mask, orient)  # same voxels, other direction matrix and origin
    aligned = io.align_mask(stored, image)
    assert np.array_equal(sitk.GetArrayFromImage(aligned), labels)
    assert aligned.GetOrigin() == image.GetOrigin()


def test_mask_on_another_grid_is_a_mismatch_unless_resampling_is_asked_for():
    image = _image()
    mask = sitk.GetImageFromArray(np.ones((5, 6, 7), np.uint8))
    mask.CopyInformation(image)
    mask.SetOrigin((10.35, -20.0, 30.0))  # half a voxel off
    with pytest.raises(io.GeometryMismatch, match="is not the image grid"):
        io.align_mask(mask, image)
    resampled = io.align_mask(mask, image, resample=True)
    assert resampled.GetSize() == image.GetSize()
    other_spacing = sitk.Image(mask)
    other_spacing.SetOrigin(image.GetOrigin())
    other_spacing.SetSpacing((0.7, 0.8, 2.5))
    with pytest.raises(io.GeometryMismatch):
        io.align_mask(other_spacing, image)


def test_labels_selection_and_connected_components():
    array = np.zeros((6, 10, 10), np.uint8)
    array[1:3, 1:3, 1:3] = 2
    array[4:6, 6:9, 6:9] = 2
    array[1:2, 7:9, 1:2] = 5
    mask = sitk.GetImageFromArray(array)
    assert io.mask_labels(mask) == [2, 5]
    binary = io.select_label(mask, 2)
    assert sitk.GetArrayFromImage(binary).sum() == 8 + 18
    parts = sitk.GetArrayFromImage(io.split_components(binary))
    assert sorted(np.unique(parts)) == [0, 1, 2]
    assert (parts == 1).sum() == 18  # largest first


# ---------------------------------------------------------------------------------------------- whole files only
def _cut(path, keep):
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[:int(len(data) * keep)])
    return cut


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_truncated_nifti_is_refused_not_zero_filled(tmp_path, suffix):
    path = io.write_image(_image((20, 30, 30)), tmp_path / f"ct{suffix}")
    cut = _cut(path, 0.6)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(cut))).size == 20 * 30 * 30  # SimpleITK alone accepts it
    with pytest.raises(io.ImageReadError, match="truncated"):
        io.read_image(cut)


def test_a_gzip_crc_error_is_refused(tmp_path):
    path = io.write_image(_image(), tmp_path / "ct.nii.gz")
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(io.ImageReadError, match="corrupt"):
        io.read_image(path)


def test_a_truncated_nrrd_is_refused_by_simpleitk_itself(tmp_path):
    path = io.write_image(_image((20, 30, 30)), tmp_path / "ct.nrrd")
    with pytest.raises(io.ImageReadError):
        io.read_image(_cut(path, 0.6))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_nan_voxels_are_read_as_nan(tmp_path, suffix):
    """ITK's NIfTI reader turns NaN into 0; read_image puts them back, so the validator can refuse them."""
    array = sitk.GetArrayFromImage(_image())
    array[2, 3, 4] = array[0, 0, 1] = np.nan
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(_image())
    path = io.write_image(image, tmp_path / f"ct{suffix}")
    back = io.read_image(path)
    assert np.array_equal(np.isnan(sitk.GetArrayFromImage(back)), np.isnan(array))
    assert np.allclose(back.GetDirection(), image.GetDirection()) and np.allclose(back.GetSpacing(), (0.7, 0.8, 2.0))


def test_real_ct_reads_as_simpleitk_reads_it(spine_ct):
    for name in ("ct.nii.gz", "vertebrae.nii.gz"):
        ours, theirs = io.read_image(spine_ct / name), sitk.ReadImage(str(spine_ct / name))
        assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
        assert ours.GetDirection() == theirs.GetDirection() and ours.GetOrigin() == theirs.GetOrigin()


def test_nifti_header_layout_big_endian_and_nifti2():
    from radfuse.data.image_integrity import nifti_layout

    header = bytearray(348)
    header[0:4] = (348).to_bytes(4, "big")
    header[40:56] = np.array([3, 4, 5, 6, 1, 1, 1, 1], ">i2").tobytes()
    header[70:74] = np.array([16, 32], ">i2").tobytes()
    header[108:112] = np.array([352], ">f4").tobytes()
    layout = nifti_layout(bytes(header))
    assert (layout.offset, layout.voxels, layout.bytes_per_voxel, layout.needed) == (352, 120, 4, 352 + 480)
    assert layout.float_dtype == np.dtype(">f4")
    header2 = bytearray(540)
    header2[0:4] = (540).to_bytes(4, "little")
    header2[12:16] = np.array([4, 16], "<i2").tobytes()
    header2[16:80] = np.array([2, 7, 9, 1, 1, 1, 1, 1], "<i8").tobytes()
    header2[168:176] = np.array([544], "<i8").tobytes()
    layout2 = nifti_layout(bytes(header2))
    assert (layout2.needed, layout2.float_dtype) == (544 + 63 * 2, None)
    assert nifti_layout(b"garbage" * 100) is None
