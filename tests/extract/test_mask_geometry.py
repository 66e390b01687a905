"""One geometry rule for the whole pipeline: every mask the validator accepts reaches PyRadiomics on the image's own
array grid (radfuse.data.io.align_mask), so radiomics never drops a validated ROI for its storage order.

Real spine CT, one vertebral body (L1), the `fast` preset: a mask stored with permuted or flipped axes, or with an
origin 1e-4 voxel off, gives exactly the features of the image-grid mask; a mask on another grid needs
`data.resample_masks=true`, which reaches the radiomics tasks and their cache key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from hydra import compose, initialize_config_dir

from radfuse.data.validate import validate_manifest
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import ExtractOptions, RoiError, extract_roi, run_roi_task
from radfuse.extract.runner import RoiSpec, make_tasks
from radfuse.stages import extract as stage

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
FAST = load_params(CONF / "radiomics" / "fast.yaml")
L1, L2 = 20, 21  # vertebral_bodies.nii.gz, VerSe numbering
# DICOMOrient codes relative to the CT's own (RAS in ITK's convention): same voxels, other storage order
STORED = {"permuted": "ARS",            # x and y swapped: size (101, 122, 112) for the CT's (122, 101, 112)
          "flipped": "LAS",             # x runs the other way (origin at the far end)
          "permuted_flipped": "SPL"}    # x and z swapped, both reversed
SHAPE_2D = ("original_shape_Maximum2DDiameterSlice", "original_shape_Maximum2DDiameterRow",
            "original_shape_Maximum2DDiameterColumn")


@pytest.fixture(scope="module")
def masks(spine_ct, tmp_path_factory) -> dict[str, Path]:
    """The vertebral-body label map as stored by the dataset and in every other way this module tries."""
    folder = tmp_path_factory.mktemp("masks")
    original = sitk.ReadImage(str(spine_ct / "vertebral_bodies.nii.gz"))
    paths = {"image_grid": spine_ct / "vertebral_bodies.nii.gz"}
    for name, code in STORED.items():
        paths[name] = folder / f"{name}.nii.gz"
        sitk.WriteImage(sitk.DICOMOrient(original, code), str(paths[name]))
    shifted = sitk.Image(original)
    origin = np.array(original.GetOrigin()) + 1e-4 * np.array(original.GetSpacing())  # 1e-4 voxel per axis
    shifted.SetOrigin(tuple(origin))
    paths["origin_1e-4"] = folder / "origin_1e-4.nrrd"  # NRRD keeps the origin in double precision
    sitk.WriteImage(shifted, str(paths["origin_1e-4"]))
    other = sitk.Image(original)  # half a voxel off in x: another grid, resampled only when asked
    other.SetOrigin(tuple(np.array(original.GetOrigin()) + np.array([1.5, 0.0, 0.0])))
    paths["other_grid"] = folder / "other_grid.nii.gz"
    sitk.WriteImage(other, str(paths["other_grid"]))
    return paths


@pytest.fixture(scope="module")
def reference(spine_ct, masks) -> dict[str, float]:
    features, _ = extract_roi(spine_ct / "ct.nii.gz", masks["image_grid"], L1, FAST)
    return features


def _assert_same_features(features: dict[str, float], reference: dict[str, float]) -> None:
    assert list(features) == list(reference)
    different = {k: (features[k], reference[k]) for k in reference
                 if features[k] != pytest.approx(reference[k], rel=1e-9, abs=1e-12)}
    assert not different


def test_the_validator_accepts_every_mask_but_the_one_on_another_grid(spine_ct, masks):
    rows = [{"case_id": name, "patient_id": "p0", "image": str(spine_ct / "ct.nii.gz"), "mask": str(path),
             "mask_label": L1, "label": "0", "cohort": "train"} for name, path in masks.items()]
    problems = validate_manifest(pd.DataFrame(rows), n_folds=1)
    assert [p.case_id for p in problems] == ["other_grid"] and "geometry mismatch" in problems[0].message
    assert validate_manifest(pd.DataFrame(rows), n_folds=1, resample_masks=True) == []


@pytest.mark.parametrize("stored", [*STORED, "origin_1e-4"])
def test_a_mask_stored_another_way_gives_the_features_of_the_image_grid_mask(spine_ct, masks, reference, stored):
    features, diagnostics = extract_roi(spine_ct / "ct.nii.gz", masks[stored], L1, FAST)
    _assert_same_features(features, reference)
    for name in SHAPE_2D:  # defined along the image's index axes: the mask's storage order must not swap them
        assert features[name] == reference[name], name
    assert diagnostics["diagnostics_radfuse_crop"].startswith("image and mask to ROI")  # the crop still applies


def test_a_mask_on_another_grid_needs_resample_masks(spine_ct, masks, reference):
    with pytest.raises(RoiError, match=r"geometry mismatch.*data\.resample_masks=true"):
        extract_roi(spine_ct / "ct.nii.gz", masks["other_grid"], L1, FAST)
    features, _ = extract_roi(spine_ct / "ct.nii.gz", masks["other_grid"], L1, FAST, resample_masks=True)
    assert list(features) == list(reference)
    volume, expected = features["original_shape_VoxelVolume"], reference["original_shape_VoxelVolume"]
    assert volume == pytest.approx(expected, rel=0.1)  # nearest resampling by half a voxel: about the same ROI
    # resample_masks leaves a mask already on the image grid (however stored) exactly as it was
    again, _ = extract_roi(spine_ct / "ct.nii.gz", masks["permuted"], L1, FAST, resample_masks=True)
    _assert_same_features(again, reference)


def test_resample_masks_reaches_the_tasks_and_enters_the_cache_key(spine_ct, masks, tmp_path):
    roi = RoiSpec("other", str(spine_ct / "ct.nii.gz"), str(masks["other_grid"]), L1)
    on, off = ExtractOptions(resample_masks=True), ExtractOptions(resample_masks=False)
    (task_on,), _ = make_tasks([roi], FAST, on)
    (task_off,), _ = make_tasks([roi], FAST, off)
    assert task_on.key != task_off.key
    assert run_roi_task(task_on, FAST, str(tmp_path), on).status == "computed"
    failed = run_roi_task(task_off, FAST, str(tmp_path), off)  # never the result cached under the other setting
    assert failed.status == "failed" and "resample_masks" in failed.reason
    assert run_roi_task(task_on, FAST, str(tmp_path), on).status == "cached"


def _cfg(out: Path, manifest: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("extract", overrides=[f"paths.out={out}", f"data.manifest={manifest}", "extract.progress=false",
                                             "extract.deep.source=null", "radiomics=fast", *overrides])


def _manifest(path: Path, spine_ct: Path, rois: dict[str, tuple[Path, int]]) -> Path:
    rows = [{"case_id": case, "patient_id": "p0", "image": str(spine_ct / "ct.nii.gz"), "mask": str(mask),
             "mask_label": label, "label": "0", "cohort": "train"} for case, (mask, label) in rois.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_extract_stage_keeps_every_validated_roi_and_says_which_failed(spine_ct, masks, reference, tmp_path,
                                                                      caplog):
    manifest = _manifest(tmp_path / "manifest.csv", spine_ct, {
        "permuted": (masks["permuted"], L1), "flipped": (masks["flipped"], L1),
        "other_grid": (masks["other_grid"], L2)})
    summary = stage.run(_cfg(tmp_path / "out", manifest, "data.resample_masks=true", "run=resampled"))
    assert summary["rows"] == 3 and summary["failures"] == 0
    table = pd.read_parquet(Path(summary["folder"]) / "radiomics.parquet").set_index("case_id")
    for case in ("permuted", "flipped"):
        row = {k[len("rad__"):]: v for k, v in table.loc[case].items()}
        _assert_same_features(row, reference)

    caplog.clear()
    summary = stage.run(_cfg(tmp_path / "out", manifest, "data.resample_masks=false", "run=strict"))
    assert summary["rows"] == 2 and summary["failures"] == 1
    assert summary["computed"] == 2 and summary["cached"] == 0  # the setting is in every ROI's cache key
    failures = pd.read_csv(Path(summary["folder"]) / "failures.csv")
    assert list(failures["case_id"]) == ["other_grid"] and "geometry mismatch" in failures["reason"][0]
    line = [r.getMessage() for r in caplog.records if "failed" in r.getMessage() and "of 3" in r.getMessage()]
    assert line and "1 of 3 ROIs failed" in line[0] and "failures.csv" in line[0], caplog.text


def test_extract_exits_non_zero_when_every_roi_fails(spine_ct, masks, tmp_path):
    manifest = _manifest(tmp_path / "manifest.csv", spine_ct, {"other_grid": (masks["other_grid"], L1)})
    done = subprocess.run([sys.executable, "extract.py", f"paths.out={tmp_path / 'out'}", f"data.manifest={manifest}",
                           "extract.progress=false", "extract.deep.source=null", "radiomics=fast"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    assert done.returncode != 0, done.stdout + done.stderr
    message = [line for line in done.stderr.splitlines() if "every ROI failed" in line]
    assert message and "geometry mismatch" in message[-1] and "other_grid" in message[-1], done.stderr
    assert not (tmp_path / "out" / "extract" / "default" / "radiomics.parquet").exists()


def test_a_2d_image_takes_the_same_rule():
    """A 2D scan (one slice) with its mask stored transposed: aligned losslessly, the same features."""
    from radfuse.data import io

    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(100, 30, (40, 50)).astype(np.float32))
    image.SetSpacing((0.7, 0.9))
    image.SetOrigin((3.0, -4.0))
    roi = np.zeros((40, 50), np.uint8)
    roi[10:30, 15:40] = 1
    roi[12:14, 20:22] = 0
    mask = sitk.GetImageFromArray(roi)
    mask.CopyInformation(image)
    stored = sitk.GetImageFromArray(np.ascontiguousarray(roi.T))  # x and y swapped
    stored.SetSpacing((0.9, 0.7))
    stored.SetOrigin((3.0, -4.0))
    stored.SetDirection((0.0, 1.0, 1.0, 0.0))
    assert np.array_equal(sitk.GetArrayFromImage(io.align_mask(stored, image)), roi)
    params = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "shape2D": []},
              "setting": {"force2D": True, "binWidth": 25}}
    _assert_same_features(extract_roi(image, stored, 1, params)[0], extract_roi(image, mask, 1, params)[0])
