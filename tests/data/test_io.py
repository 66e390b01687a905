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
