"""DICOM-SEG (written with highdicom) and RTSTRUCT (written with rt-utils) over a CT series cut from the real spine
CT: each ROI rasterised onto the series' grid, written as NIfTI beside the manifest, and validated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radfuse.data.build.common import join_grades, write_manifest
from radfuse.data.build.dicom_seg import build_dicom_seg
from radfuse.data.build.rtstruct import build_rtstruct
from tests.data.build.spine_cases import LUMBAR, write_case, write_dicom_series

ROIS = {"L1": LUMBAR["L1"], "L3": LUMBAR["L3"]}


def _series(spine_ct, root, p):
    case = write_case(spine_ct, root / "crops" / f"P{p}", shift=p, files=("ct", "vertebrae"))
    datasets = write_dicom_series(sitk.ReadImage(str(case["ct"])), root / "study" / f"P{p}" / "ct", f"P{p}")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case["vertebrae"])))
    return datasets, labels


def _grades(path, patients):
    rows = [{"patient_id": f"P{p}", "roi": name, "label": (p + i) % 2} for p in range(patients)
            for i, name in enumerate(ROIS)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_dicom_seg_segments_land_exactly_on_the_series_grid(spine_ct, tmp_path, assert_valid):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    truth = {}
    for p in range(2):
        datasets, labels = _series(spine_ct, tmp_path, p)
        label_map = np.zeros(labels.shape, np.uint8)
        descriptions = []
        for number, (name, value) in enumerate(ROIS.items(), start=1):
            label_map[labels == value] = number
            descriptions.append(hd.seg.SegmentDescription(
                segment_number=number, segment_label=f"vertebrae_{name}",
                segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Bone,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
            truth[(f"P{p}", name)] = labels == value
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=label_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=2,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="radfuse-test",
            manufacturer_model_name="test", software_versions="0", device_serial_number="0")
        (tmp_path / "study" / f"P{p}" / "seg").mkdir()
        seg.save_as(tmp_path / "study" / f"P{p}" / "seg" / "vertebrae.dcm")
    out = tmp_path / "built"
    build = build_dicom_seg(tmp_path / "study", out / "masks")
    assert sorted((r.patient_id, r.roi) for r in build.rois) == sorted(truth)
    join_grades(build, _grades(tmp_path / "grades.csv", 2))
    frame = write_manifest(build, out / "manifest.csv")
    assert_valid(out / "manifest.csv", classes=["0", "1"])
    for _, row in frame.iterrows():
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / row["mask"])))
        assert np.array_equal(mask > 0, truth[(row.patient_id, row.roi)]), row.case_id
        assert row["mask"].startswith("masks/")


def test_rtstruct_contours_rasterise_onto_the_series_grid(spine_ct, tmp_path, assert_valid):
    from rt_utils import RTStructBuilder

    truth = {}
    for p in range(2):
        _, labels = _series(spine_ct, tmp_path, p)
        series = tmp_path / "study" / f"P{p}" / "ct"
        rtstruct = RTStructBuilder.create_new(dicom_series_path=str(series))
        order = {str(ds.SOPInstanceUID): k for k, ds in enumerate(rtstruct.series_data)}
        from radfuse.data.build.dicom_objects import series_uids

        z_of = [order[uid] for uid in series_uids(series)]  # rt-utils slice k -> our z
        for name, value in ROIS.items():
            rows_cols_slices = np.zeros(labels.shape[1:] + labels.shape[:1], bool)
            for z, k in enumerate(z_of):
                rows_cols_slices[:, :, k] = labels[z] == value
            rtstruct.add_roi(mask=rows_cols_slices, name=name)
            truth[(f"P{p}", name)] = labels == value
        (tmp_path / "study" / f"P{p}" / "rt").mkdir()
        rtstruct.save(str(tmp_path / "study" / f"P{p}" / "rt" / "rtstruct.dcm"))
    out = tmp_path / "built"
    build = build_rtstruct(tmp_path / "study", out / "masks")
    assert sorted((r.patient_id, r.roi) for r in build.rois) == sorted(truth)
    join_grades(build, _grades(tmp_path / "grades.csv", 2))
    frame = write_manifest(build, out / "manifest.csv")
    assert_valid(out / "manifest.csv", classes=["0", "1"])
    for _, row in frame.iterrows():
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / row["mask"]))) > 0
        assert _dice(mask, truth[(row.patient_id, row.roi)]) > 0.8, row.case_id
