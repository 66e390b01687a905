"""Folder layout (DICOM series + label map + XLSX grades), VerSe / BIDS, and PyRadiomics' batch CSV, on crops of
the real spine CT; every built manifest goes through the validator."""

from __future__ import annotations

import pandas as pd
import pytest
import SimpleITK as sitk

from radfuse.data.build.__main__ import main
from radfuse.data.build.common import BuildError, join_grades, write_manifest
from radfuse.data.build.labels import VERSE_LABELS
from radfuse.data.build.pyradiomics_csv import build_pyradiomics_csv
from radfuse.data.build.verse import build_verse
from tests.data.build.spine_cases import LUMBAR, write_case, write_dicom_series


def _folder_study(spine_ct, root, patients=4):
    rows = []
    for p in range(patients):
        folder = root / f"P{p}"
        case = write_case(spine_ct, folder, shift=p, files=("ct", "vertebrae"))
        write_dicom_series(sitk.ReadImage(str(case["ct"])), folder / "dicom", f"P{p}")
        case["ct"].unlink()  # the DICOM series is the image
        rows += [{"patient_id": f"P{p}", "roi": name, "label": (p + i) % 2, "age": 60 + p}
                 for i, name in enumerate(LUMBAR)]
    return rows


def test_folder_of_dicom_series_with_xlsx_grades_via_the_cli(spine_ct, tmp_path, capsys, assert_valid):
    rows = _folder_study(spine_ct, tmp_path / "study")
    (tmp_path / "study" / "P9").mkdir()  # a patient folder without an image
    grades = pd.DataFrame(rows[1:] + [{"patient_id": "P7", "roi": "L1", "label": 0, "age": 70}])
    grades.to_excel(tmp_path / "grades.xlsx", index=False)
    out = tmp_path / "built" / "manifest.csv"
    code = main(["folder", str(tmp_path / "study"), "--out", str(out), "--grades", str(tmp_path / "grades.xlsx"),
                 "--masks", "vertebrae.nii.gz", "--label-names", "totalseg", "--rois", *LUMBAR, "--folds", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    frame = assert_valid(out, classes=["0", "1"], folds=2)
    assert len(frame) == 19 and "P0_L1" not in set(frame.case_id)  # its grade is missing
    assert set(frame.mask_label) == set(LUMBAR.values()) and set(frame.age) == {60, 61, 62, 63}
    assert all(path.endswith("dicom") for path in frame.image)
    assert pd.read_csv(out).image.iloc[0].startswith("../study/")  # relative to the manifest's folder
    assert "skipped P0_L1: no grade for patient P0, ROI L1" in printed.out
    assert "skipped P9: no image" in printed.out
    assert "skipped P7/L1: this grade matched no ROI" in printed.out


def test_verse_tree_numbers_vertebrae_the_verse_way(spine_ct, tmp_path, assert_valid):
    root = tmp_path / "verse"
    grades = []
    for p in range(4):
        scan = f"sub-verse{p:03d}"
        case = write_case(spine_ct, tmp_path / "crops" / scan, shift=p, files=("ct", "vertebral_bodies"))
        (root / "rawdata" / scan).mkdir(parents=True)
        (root / "derivatives" / scan).mkdir(parents=True)
        case["ct"].rename(root / "rawdata" / scan / f"{scan}_ct.nii.gz")
        case["vertebral_bodies"].rename(root / "derivatives" / scan / f"{scan}_seg-vert_msk.nii.gz")
        grades += [{"patient_id": scan, "roi": n, "label": "fracture" if (p + i) % 2 else "normal"}
                   for i, n in enumerate(LUMBAR)]
    (root / "derivatives" / "sub-verse009").mkdir()
    orphan = root / "derivatives" / "sub-verse009" / "sub-verse009_seg-vert_msk.nii.gz"
    orphan.write_bytes((root / "derivatives" / "sub-verse000" / "sub-verse000_seg-vert_msk.nii.gz").read_bytes())
    build = build_verse(root, select=list(LUMBAR))
    assert {r.roi: r.mask_label for r in build.rois} == {VERSE_LABELS[k]: k for k in range(20, 25)}
    assert any(s.case == "sub-verse009" and "no rawdata" in s.reason for s in build.skipped)
    pd.DataFrame(grades).to_csv(tmp_path / "grades.csv", index=False)
    join_grades(build, tmp_path / "grades.csv")
    write_manifest(build, root / "manifest.csv")
    frame = assert_valid(root / "manifest.csv", classes=["normal", "fracture"], folds=2)
    assert "sub-verse001_L3" in set(frame.case_id) and len(frame) == 20


def test_pyradiomics_batch_csv_names_the_columns_to_add(spine_ct, tmp_path, assert_valid):
    rows = []
    for p in range(2):
        case = write_case(spine_ct, tmp_path / f"P{p}", shift=p, files=("ct", "vertebrae"))
        rows += [{"Image": f"P{p}/ct.nii.gz", "Mask": f"P{p}/vertebrae.nii.gz", "Label": value}
                 for value in LUMBAR.values()]
    batch = tmp_path / "batch.csv"
    pd.DataFrame(rows).to_csv(batch, index=False)
    with pytest.raises(BuildError, match=r"add the column\(s\) \['patient_id', 'label'\]"):
        build_pyradiomics_csv(batch)
    table = pd.read_csv(batch).assign(patient_id=[r["Image"].split("/")[0] for r in rows],
                                      label=[i % 2 for i in range(len(rows))], site="A")
    table.to_csv(batch, index=False)
    build = build_pyradiomics_csv(batch)
    write_manifest(build, tmp_path / "out" / "manifest.csv")
    frame = assert_valid(tmp_path / "out" / "manifest.csv", classes=["0", "1"])
    assert list(frame.mask_label) == list(table.Label) and set(frame.site) == {"A"}
    assert len(set(frame.case_id)) == len(frame)  # Label 31 of P0 -> P0_label31


def test_new_patients_without_grades_build_a_manifest_to_score(spine_ct, tmp_path, capsys):
    """`--new`: patients to score with a finished study (radfuse score) have no grade; without the flag an ROI
    without a label is refused, since a study's manifest needs its classes."""
    _folder_study(spine_ct, tmp_path / "new", patients=1)
    out = tmp_path / "new" / "manifest.csv"
    args = ["folder", str(tmp_path / "new"), "--out", str(out), "--masks", "vertebrae.nii.gz",
            "--label-names", "totalseg", "--rois", *LUMBAR]
    assert main(args) == 2 and "no label" in capsys.readouterr().err
    assert main([*args, "--new"]) == 0
    printed = capsys.readouterr()
    assert "no label" not in printed.err and "radfuse.score" in printed.out
    frame = pd.read_csv(out)
    assert len(frame) == 5 and frame.label.isna().all()
    pd.DataFrame([{"patient_id": "P0", "age": 71}]).to_csv(tmp_path / "new.csv", index=False)  # no label column
    assert main([*args, "--new", "--grades", str(tmp_path / "new.csv")]) == 0, capsys.readouterr().err
    frame = pd.read_csv(out)
    assert len(frame) == 5 and frame.label.isna().all() and set(frame.age) == {71}
    assert main([*args, "--grades", str(tmp_path / "new.csv")]) == 2  # a study's grades need their label column
