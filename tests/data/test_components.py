import numpy as np
import pandas as pd

from radfuse.data.components import expand_components
from radfuse.data.manifest import read_manifest
from tests.data.cohort_factory import write_volume


def test_each_component_becomes_its_own_roi(tmp_path):
    image = np.zeros((10, 20, 20), np.int16)
    mask = np.zeros_like(image, dtype=np.uint8)
    mask[1:4, 2:6, 2:6] = 1            # 48 voxels
    mask[6:9, 10:16, 10:16] = 1        # 108 voxels: the largest, so component 1
    mask[0, 19, 19] = 1                # a speck below min_voxels
    write_volume(tmp_path / "ct.nii.gz", image)
    write_volume(tmp_path / "mask.nii.gz", mask)
    write_volume(tmp_path / "single.nii.gz", (image == 0).astype(np.uint8))
    pd.DataFrame([{"case_id": "a", "patient_id": "p", "image": "ct.nii.gz", "mask": "mask.nii.gz", "label": 1},
                  {"case_id": "b", "patient_id": "q", "image": "ct.nii.gz", "mask": "single.nii.gz", "label": 0}]
                 ).to_csv(tmp_path / "m.csv", index=False)
    expanded = expand_components(read_manifest(tmp_path / "m.csv"), tmp_path / "out", min_voxels=5)
    assert list(expanded.case_id) == ["a_cc1", "a_cc2", "b"]
    assert list(expanded.patient_id) == ["p", "p", "q"]
    from radfuse.data import io
    labels = io.read_image(expanded.loc[0, "mask"])
    array = __import__("SimpleITK").GetArrayFromImage(labels)
    assert (array == 1).sum() == 108 and (array == 2).sum() == 48 and array.max() == 2
    assert (tmp_path / "out" / "manifest.csv").exists()
