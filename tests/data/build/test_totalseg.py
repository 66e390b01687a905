"""TotalSegmentator output on the real spine CT: header label names, the class map, per-structure files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radfuse.data.build.common import join_grades, write_manifest
from radfuse.data.build.labels import TOTALSEG_LABELS, VERSE_LABELS, header_label_map, roi_name
from radfuse.data.build.totalseg import build_totalseg
from tests.data.build.spine_cases import LUMBAR, crop, write_case


def test_header_label_maps_of_the_real_files_agree_with_the_class_maps(spine_ct):
    whole, bodies = header_label_map(spine_ct / "vertebrae.nii.gz"), header_label_map(spine_ct / "vertebral_bodies.nii.gz")
    assert whole and bodies
    assert {k: v for k, v in whole.items()} == {k: TOTALSEG_LABELS[k] for k in whole}
    assert {k: roi_name(v) for k, v in bodies.items()} == {k: VERSE_LABELS[k] for k in bodies}
    assert header_label_map(spine_ct / "ct.nii.gz") == {}


def test_multilabel_file_names_come_from_its_header(spine_ct, tmp_path, assert_valid):
    build = build_totalseg(spine_ct, mask_patterns=["vertebrae.nii.gz"])
    by_name = {roi.roi: roi for roi in build.rois}
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(spine_ct / "vertebrae.nii.gz")))
    assert set(LUMBAR) <= set(by_name)
    for name, roi in by_name.items():
        assert roi.patient_id == "spine-ct" and roi.case_id == f"spine-ct_{name}"
        assert (stored == roi.mask_label).sum() >= 8  # the number that is in the file
    grades = tmp_path / "grades.csv"
    pd.DataFrame({"patient_id": "spine-ct", "roi": list(by_name), "label": [i % 2 for i in range(len(by_name))]}
                 ).to_csv(grades, index=False)
    join_grades(build, grades)
    frame = write_manifest(build, tmp_path / "manifest.csv")
    assert_valid(tmp_path / "manifest.csv", classes=["0", "1"])
    assert dict(zip(frame["roi"], frame["mask_label"]))["L1"] == next(k for k, v in header_label_map(
        spine_ct / "vertebrae.nii.gz").items() if v == "vertebrae_L1")


def test_per_structure_files_skip_empty_ones_and_unwanted_classes(spine_ct, tmp_path, assert_valid):
    rows = []
    for p in range(4):
        folder = tmp_path / "study" / f"P{p}"
        case = write_case(spine_ct, folder, shift=p, files=("ct", "vertebrae"))
        labels = sitk.ReadImage(str(case["vertebrae"]))
        seg = folder / "segmentations"
        seg.mkdir()
        for name, value in {**LUMBAR, "C1": 50}.items():
            binary = sitk.Cast(labels == value, sitk.sitkUInt8)
            sitk.WriteImage(binary, str(seg / f"vertebrae_{name}.nii.gz"), True)
        sitk.WriteImage(sitk.Cast(labels == 1, sitk.sitkUInt8), str(seg / "liver.nii.gz"), True)
        case["vertebrae"].unlink()
        rows += [{"patient_id": f"P{p}", "roi": name, "label": (p + i) % 2} for i, name in enumerate(LUMBAR)]
    build = build_totalseg(tmp_path / "study")
    assert sorted({r.roi for r in build.rois}) == sorted(LUMBAR)
    assert all(r.mask_label is None for r in build.rois)
    empty = [s for s in build.skipped if "empty" in s.reason]
    assert {s.case for s in empty} == {f"P{p}" for p in range(4)} and all("vertebrae_C1" in s.file for s in empty)
    assert not any("liver" in s.file for s in build.skipped)  # an unwanted class is not even opened
    pd.DataFrame(rows).to_csv(tmp_path / "grades.csv", index=False)
    join_grades(build, tmp_path / "grades.csv")
    write_manifest(build, tmp_path / "manifest.csv")
    frame = assert_valid(tmp_path / "manifest.csv", classes=["0", "1"], folds=2)
    assert len(frame) == 20
    mask = sitk.GetArrayFromImage(sitk.ReadImage(frame.loc[frame.case_id == "P0_L1", "mask"].iloc[0]))
    whole = sitk.GetArrayFromImage(crop(sitk.ReadImage(str(spine_ct / "vertebrae.nii.gz"))))
    assert np.array_equal(mask > 0, whole == LUMBAR["L1"])
