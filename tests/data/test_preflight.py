"""The pre-flight of a whole study (`python -m radfuse.data.validate --config-dir STUDY experiment=study`): what the
chosen training, the fuse stage's inner LASSO folds and the scan's field of view need from the data, reported before
any stage fits anything, and the same checks in the train and fuse stages themselves."""

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

from radfuse.data.manifest import read_manifest
from radfuse.data.problems import ManifestInvalid, errors
from radfuse.data.validate import main, validate_manifest
from radfuse.init import main as init_main
from radfuse.stages.study import CONF_DIR, with_study_groups
from tests.data.cohort_factory import make_tiny_cohort, write_volume

ROOT = CONF_DIR.parent


def _study(tmp_path: Path, cohorts: list[str], labels: list[str] | None = None, *init_args: str) -> Path:
    """A tiny one-ROI-per-patient cohort with the given cohorts (and labels), and its study from radfuse.init."""
    manifest = make_tiny_cohort(tmp_path / "data", n_patients=len(cohorts))
    frame = pd.read_csv(manifest)
    frame["cohort"] = cohorts
    if labels is not None:
        frame["label"] = labels
    frame.to_csv(manifest, index=False)
    study = tmp_path / "study"
    assert init_main([str(study), "--manifest", str(manifest), *init_args]) == 0
    return study


def _compose(stage: str, study: Path, *extra: str):
    overrides = with_study_groups(stage, ["experiment=study", f"hydra.searchpath=[file://{study}]", *extra])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(stage, overrides=overrides)


def _lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


# ---------------------------------------------------------------------------------------------- a) internal cohort
NO_INTERNAL = ["train"] * 10 + ["external"] * 2


def test_validator_refuses_a_study_whose_checkpoint_choice_has_no_internal_cohort(tmp_path, capsys):
    study = _study(tmp_path, NO_INTERNAL)
    assert main(["--config-dir", str(study), "experiment=study"]) == 2
    lines = _lines(capsys)
    line = next(line for line in lines if "internal" in line and "callbacks.model_checkpoint" in line)
    assert line.startswith("[manifest] cohort:") and "manifest.csv" in line and "val/auc" in line
    assert "Fix:" in line and "cohort 'internal'" in line and "callbacks.model_checkpoint=null" in line
    assert "train: 10 patient(s)" in line and "external: 2" in line
    assert not (study / "outputs").exists()  # the pre-flight writes nothing, not even splits.json
    # the opt-out named in the fix is accepted: no checkpoint choice, nothing needs the internal cohort
    assert main(["--config-dir", str(study), "experiment=study", "callbacks.model_checkpoint=null"]) == 0, \
        "\n".join(_lines(capsys))


def test_train_stage_refuses_before_training_without_an_internal_cohort(tmp_path):
    from radfuse.stages import train

    study = _study(tmp_path, NO_INTERNAL)
    cfg = _compose("train", study, "debug=tiny", "model.arch=resnet18", f"paths.cache={tmp_path / 'cache'}")
    with pytest.raises(ManifestInvalid, match="no internal cohort"):
        train.run(cfg)
    assert not (study / "outputs" / "train" / "main" / "last.ckpt").exists()
    # fold runs validate on their CV fold: they need no internal cohort
    from radfuse.data.splits import make_splits
    from radfuse.stages.preflight import train_problems

    splits = make_splits(read_manifest(tmp_path / "data" / "manifest.csv"), n_folds=5)
    assert train_problems(_compose("train", study, "data.fold=0"), splits, "manifest.csv") == []
    assert train_problems(_compose("train", study), splits, "manifest.csv")


def test_an_automatic_split_gives_the_internal_cohort(tmp_path, capsys):
    study = _study(tmp_path, [None] * 10 + ["external"] * 2)  # 8:2 train / internal of the ten
    assert main(["--config-dir", str(study), "experiment=study"]) == 0, "\n".join(_lines(capsys))


# ---------------------------------------------------------------------------------------------- b) inner LASSO folds
def test_inner_lasso_folds_with_one_patient_of_a_class_are_refused_before_fitting(tmp_path, capsys):
    # class 1: two training patients, two outer folds -> each outer training fold holds one patient of class 1
    labels = ["0"] * 8 + ["1", "1"] + ["0", "1"]
    study = _study(tmp_path, ["train"] * 10 + ["internal"] * 2, labels, "--folds", "2")
    assert main(["--config-dir", str(study), "experiment=study"]) == 2
    line = next(line for line in _lines(capsys) if "LASSO" in line and not line.startswith("warning"))
    assert line.startswith("[manifest] label:") and "class '1'" in line and "1 patient" in line
    assert "blocks.rad.lasso.n_splits=10" in line and "final.lasso.n_splits=10" in line
    assert "outer fold" in line and "manifest.csv" in line and "Fix:" in line

    from radfuse.stages import fuse

    cfg = _compose("fuse", study, "report.enabled=false", "n_jobs=1")
    with pytest.raises(ManifestInvalid, match="LASSO"):  # before any table is read or anything is fitted
        fuse.run(cfg)
    assert not (study / "outputs" / "fuse" / "main" / "model.joblib").exists()


def test_inner_lasso_folds_with_fewer_patients_than_folds_are_a_warning_with_the_numbers(tmp_path, capsys):
    study = _study(tmp_path, ["train"] * 8 + ["internal"] * 4, None, "--folds", "2")  # 4 training patients a class
    assert main(["--config-dir", str(study), "experiment=study"]) == 0
    warnings = [line for line in _lines(capsys) if "LASSO" in line]
    assert warnings and all(line.startswith("warning: [manifest] label:") for line in warnings)
    line = warnings[0]
    assert "2 patient(s)" in line and "10 inner folds" in line and "blocks.rad.lasso.n_splits=10" in line
    assert "uses 2 inner folds" in line and "n_splits=2" in line  # what happens, and the key that says it
    # no LASSO, nothing to warn about
    assert main(["--config-dir", str(study), "experiment=study", "blocks.rad.lasso=null", "final=scale"]) == 0
    assert not [line for line in _lines(capsys) if "LASSO" in line]


def test_validator_cli_takes_one_way_of_configuring_a_study(tmp_path, capsys):
    study = _study(tmp_path, [None] * 10 + ["external"] * 2)
    assert main(["--config-dir", str(study), "experiment=study", "--classes", "0", "1"]) == 2
    assert "data.classes" in capsys.readouterr().err  # the study's own keys, as overrides
    result = subprocess.run([sys.executable, "-m", "radfuse.data.validate", "--config-dir", str(study),
                             "experiment=study", "data.split.n_folds=9"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"})
    assert result.returncode == 2 and "fewer than 9 CV folds" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- c) the scan's edge
@pytest.mark.parametrize("direction, region, face", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (slice(0, 6), slice(6, 18), slice(6, 18)), "inferior"),
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (slice(4, 12), slice(6, 18), slice(18, 24)), "left"),
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (slice(4, 12), slice(6, 18), slice(18, 24)), "right"),
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (slice(4, 12), slice(0, 8), slice(6, 18)), "posterior"),
])
def test_roi_cut_by_the_edge_names_the_face_in_patient_terms(tmp_path, direction, region, face):
    image = np.full((16, 24, 24), -50, np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[region] = 1
    rows = [{"case_id": "P1_L1", "patient_id": "P1", "label": "0", "mask_label": 1,
             "image": str(write_volume(tmp_path / "ct.nii.gz", image, direction=direction)),
             "mask": str(write_volume(tmp_path / "mask.nii.gz", mask, direction=direction))}]
    problems = validate_manifest(pd.DataFrame(rows), n_folds=1, margin=4)
    assert not errors(problems)
    (edge,) = [p for p in problems if "face of the scan" in p.message]
    assert edge.case_id == "P1_L1" and edge.file.endswith("mask.nii.gz") and edge.column == "mask"
    assert f"touches the {face} face of the scan" in edge.message and "label 1" in edge.message
    assert "data.margin=4" in edge.message


def test_real_vertebrae_at_the_top_of_the_scan_are_reported_as_cut(spine_ct):
    rows = [{"case_id": f"spine_{label}", "patient_id": "spine", "image": str(spine_ct / "ct.nii.gz"),
             "mask": str(spine_ct / "vertebrae.nii.gz"), "mask_label": label, "label": "0"} for label in range(26, 34)]
    problems = validate_manifest(pd.DataFrame(rows), n_folds=1)
    cut = {p.case_id: p.message for p in problems if "face of the scan" in p.message}
    assert not errors(problems)
    assert set(cut) == {"spine_32", "spine_33"}  # T12 and T11 run into the scan's last slice; L1-S1 do not
    assert all("superior face" in message for message in cut.values())


def test_a_single_slice_scan_is_not_cut_along_its_one_slice(tmp_path):
    image = np.full((1, 24, 24), -50, np.int16)
    mask = np.zeros(image.shape, np.uint8)
    mask[0, 6:18, 6:18] = 1
    rows = [{"case_id": "c", "patient_id": "p", "label": "0", "image": str(write_volume(tmp_path / "i.nii.gz", image)),
             "mask": str(write_volume(tmp_path / "m.nii.gz", mask))}]
    assert validate_manifest(pd.DataFrame(rows), n_folds=1) == []


def test_the_stages_warn_about_a_cut_roi(tmp_path, caplog):
    from radfuse.data.validate import ensure_valid

    image = sitk.GetArrayFromImage(sitk.ReadImage(str(make_tiny_cohort(tmp_path, 4).parent / "images" /
                                                      "p000_ct.nii.gz")))
    mask = np.zeros(image.shape, np.uint8)
    mask[:, 6:18, 6:18] = 1  # every slice: inferior and superior faces
    frame = read_manifest(tmp_path / "manifest.csv")
    frame.loc[0, "mask"] = str(write_volume(tmp_path / "column.nii.gz", mask))
    with caplog.at_level("WARNING"):
        ensure_valid(frame, n_folds=1, margin=2)
    assert "inferior and superior faces" in caplog.text and "data.margin=2" in caplog.text


# ---------------------------------------------------------------------------------------------- ComBat, ICC
def test_fuse_refuses_combat_on_one_site_and_icc_without_a_second_reader(tmp_path):
    """The demo's fuse config (ComBat and the ICC filter on) on a one-site cohort without mask2."""
    from radfuse.data.splits import make_splits
    from radfuse.stages.preflight import fuse_problems

    manifest = make_tiny_cohort(tmp_path, n_patients=12)
    frame = pd.read_csv(manifest).assign(site="A")
    frame.to_csv(manifest, index=False)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("fuse", overrides=[f"data.manifest={manifest}", f"paths.out={tmp_path / 'out'}",
                                         "data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=2"])
    frame = read_manifest(manifest)
    problems = fuse_problems(cfg, frame, make_splits(frame, n_folds=2), ["0", "1"], str(manifest))
    combat = [p for p in errors(problems) if "ComBat" in p.message]
    icc = [p for p in errors(problems) if "ICC filter" in p.message]
    assert combat and "2 sites" in combat[0].message and "blocks.rad.combat=null" in combat[0].fix
    assert icc and icc[0].column == "mask2" and "blocks.rad.icc=null" in icc[0].fix
    assert combat[0].file == str(manifest)
    two_sites = frame.assign(site=["A", "B"] * 6)
    assert not [p for p in fuse_problems(cfg, two_sites, make_splits(two_sites, n_folds=2), ["0", "1"],
                                         str(manifest)) if "ComBat" in p.message]


def test_a_manifest_path_with_an_equals_sign_is_still_a_manifest(tmp_path, capsys):
    manifest = make_tiny_cohort(tmp_path / "run=1", n_patients=4)
    assert main([str(manifest), "--folds", "1"]) == 0, capsys.readouterr().err
