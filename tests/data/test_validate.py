import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radfuse.data.manifest import ManifestError, read_manifest
from radfuse.data.validate import ManifestInvalid, ensure_valid, main, validate_manifest
from tests.data.cohort_factory import box_case, make_tiny_cohort, write_volume

CLINICAL = {"age": "numeric", "sex": "categorical"}


def _broken_manifest(tmp_path):
    """A valid 12-patient cohort plus ten kinds of broken rows, one case each."""
    manifest = make_tiny_cohort(tmp_path, n_patients=12, classes=("0", "1"))
    frame = pd.read_csv(manifest, dtype=str)
    images = tmp_path / "images"
    good = frame.iloc[0].to_dict()

    def row(case, patient, **changes):
        return {**good, "case_id": case, "patient_id": patient, **changes}

    shifted = sitk.ReadImage(str(tmp_path / good["mask"]))
    shifted.SetOrigin((0.5, 0.0, 0.0))
    sitk.WriteImage(shifted, str(images / "shifted_mask.nii.gz"))
    write_volume(images / "empty_mask.nii.gz", np.zeros((16, 24, 24), np.uint8))
    _, multi = box_case(images, "multi", 99, label_value=3)
    multi_array = sitk.GetArrayFromImage(sitk.ReadImage(str(multi)))
    multi_array[0:2, 0:2, 0:2] = 7
    write_volume(images / "multi_mask.nii.gz", multi_array)
    (images / "corrupt.nii.gz").write_bytes(b"garbage")
    broken = [
        row("b_missing_image", "q1", image="images/nowhere.nii.gz"),
        row("b_corrupt_mask", "q2", mask="images/corrupt.nii.gz"),
        row("b_geometry", "q3", mask="images/shifted_mask.nii.gz"),
        row("b_empty_roi", "q4", mask="images/empty_mask.nii.gz"),
        row("b_label_absent", "q5", mask="images/multi_mask.nii.gz", mask_label="4"),
        row("b_several_labels", "q6", mask="images/multi_mask.nii.gz"),
        row("c000", "q7"),                                       # duplicate case_id
        row("b_two_cohorts_a", "q8", cohort="internal"),
        row("b_two_cohorts_b", "q8", cohort="external"),
        row("b_bad_label", "q9", label="3"),
        row("b_clinical_nan", "q10", age=""),
        row("b_clinical_type", "q11", age="sixty"),
    ]
    frame = pd.concat([frame, pd.DataFrame(broken)], ignore_index=True)
    frame["mask_label"] = frame.get("mask_label")
    frame.to_csv(manifest, index=False)
    return manifest


def test_every_kind_of_broken_row_is_reported_by_case(tmp_path):
    manifest = _broken_manifest(tmp_path)
    frame = read_manifest(manifest)
    problems = validate_manifest(frame, classes=["0", "1"], clinical=CLINICAL, n_folds=5)
    by_case = {}
    for p in problems:
        by_case.setdefault(p.case_id, []).append(p)
        assert p.fix, p  # every problem says what to do
    expected = {
        "b_missing_image": ("image", "unreadable"), "b_corrupt_mask": ("mask", "unreadable"),
        "b_geometry": ("mask", "geometry mismatch"), "b_empty_roi": ("mask", "empty ROI"),
        "b_label_absent": ("mask_label", "absent"), "b_several_labels": ("mask", "several labels"),
        "c000": ("case_id", "more than once"), "b_two_cohorts_a": ("cohort", "is in cohorts"),
        "b_bad_label": ("label", "not a configured class"), "b_clinical_nan": ("age", "missing"),
        "b_clinical_type": ("age", "not a number"),
    }
    for case, (column, text) in expected.items():
        assert any(p.column == column and text in p.message for p in by_case.get(case, [])), (case, by_case.get(case))
    assert [p.severity for p in by_case["b_clinical_nan"] if p.column == "age"] == ["warning"]  # imputed later
    files = {p.case_id: p.file for p in problems if p.column in ("image", "mask")}
    assert files["b_missing_image"].endswith("nowhere.nii.gz")
    assert files["b_geometry"].endswith("shifted_mask.nii.gz")
    # The valid rows are not reported.
    assert not any(c in by_case for c in ("c001", "c002", "c005"))


def test_class_with_fewer_patients_than_folds(tmp_path):
    manifest = make_tiny_cohort(tmp_path, n_patients=12, classes=("0", "0", "0", "1"))
    frame = read_manifest(manifest)
    assert not validate_manifest(frame, classes=["0", "1"], n_folds=3)
    problems = validate_manifest(frame, classes=["0", "1"], n_folds=5)
    assert [p.message for p in problems] == ["class '1' has 3 training patient(s) (cases c003, c007, c011), "
                                             "fewer than 5 CV folds"]


def test_resampling_masks_is_an_explicit_opt_in(tmp_path):
    manifest = make_tiny_cohort(tmp_path, n_patients=10)
    frame = pd.read_csv(manifest, dtype=str)
    mask = sitk.ReadImage(str(tmp_path / frame.loc[0, "mask"]))
    mask.SetOrigin((0.5, 0.0, 0.0))
    sitk.WriteImage(mask, str(tmp_path / frame.loc[0, "mask"]))
    assert any("geometry" in p.message for p in validate_manifest(read_manifest(manifest), n_folds=2))
    assert not validate_manifest(read_manifest(manifest), n_folds=2, resample_masks=True)


def test_cli_reports_everything_writes_nothing_and_exits_nonzero(tmp_path, capsys):
    manifest = _broken_manifest(tmp_path)
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    code = main([str(manifest), "--classes", "0", "1", "--clinical", "age:numeric", "sex:categorical"])
    after = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    err = capsys.readouterr().err
    assert code == 2
    assert before == after
    for case in ("b_missing_image", "b_geometry", "b_empty_roi", "b_several_labels", "b_bad_label", "c000"):
        assert f"[case {case}]" in err
    assert "Fix:" in err


def test_valid_cohort_passes_and_ensure_valid_raises_on_errors(tmp_path, capsys):
    manifest = make_tiny_cohort(tmp_path, n_patients=12)
    assert main([str(manifest), "--classes", "0", "1", "--clinical", "age", "sex:categorical"]) == 0
    frame = read_manifest(manifest)
    ensure_valid(frame, classes=["0", "1"], n_folds=5)
    with pytest.raises(ManifestInvalid, match="not a configured class"):
        ensure_valid(frame, classes=["0"], n_folds=5)


def test_unreadable_manifest_and_missing_columns(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.csv").write_text("case_id,image\nc1,x.nii.gz\n")
    with pytest.raises(ManifestError, match="patient_id"):
        read_manifest(tmp_path / "m.csv")


def test_paths_resolve_relative_to_the_manifest_folder(tmp_path):
    make_tiny_cohort(tmp_path / "study", n_patients=4)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        frame = read_manifest("study/manifest.csv")
    finally:
        os.chdir(cwd)
    assert all(os.path.isabs(p) and os.path.exists(p) for p in frame["image"])
