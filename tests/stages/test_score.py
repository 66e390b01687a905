"""`radfuse score` and `radfuse export` on a tiny finished study made by the real stages: held-out cases get the fuse
run's own refit probabilities, one ROI of a new site is scored with its warnings, an exported study scores the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from radfuse.fuse.combat import ComBat
from radfuse.fuse.pipeline import fusion_pipeline
from radfuse.score import ScoreError, _reference_combat, cli, combat_policy, score_manifest
from tests.stages.score_study import held_out_manifest, make_study


# ------------------------------------------------------------------------------------------------ fast: ComBat
def _combat_pipeline(policy: str) -> Pipeline:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(12, 3)), columns=["rad__a", "rad__b", "rad__c"])
    X["meta__site"] = ["A", "B"] * 6
    blocks = {"rad": {"combat": ComBat(unseen_site=policy), "scale": StandardScaler()}}
    from sklearn.linear_model import LogisticRegression

    return fusion_pipeline(blocks, {}, LogisticRegression()).fit(X, np.arange(12) % 2)


def _new_rows(sites: list[str]) -> pd.DataFrame:
    X = pd.DataFrame(np.random.default_rng(1).normal(size=(len(sites), 3)), columns=["rad__a", "rad__b", "rad__c"])
    return X.assign(meta__site=sites)


def test_one_roi_of_an_unseen_site_falls_back_to_reference_and_several_are_estimated():
    pipeline = _combat_pipeline("estimate")
    X = _new_rows(["A", "Z", "Y", "Y"])
    policy = combat_policy(pipeline, X["meta__site"])
    assert policy["site_seen"].tolist() == [True, False, False, False]
    assert policy["policy"].iloc[1].startswith("reference (estimate needs >= 2")
    assert policy["policy"].iloc[2].startswith("estimate (from 2 ROIs")
    with pytest.raises(ValueError, match="only 1 row"):  # what the fallback avoids
        pipeline.predict_proba(X.iloc[[1]])
    reference = _reference_combat(pipeline)
    assert reference.predict_proba(X.iloc[[1]]).shape == (1, 2)
    assert pipeline.named_steps["blocks"].named_transformers_["rad"].named_steps["combat"].unseen_site == "estimate"
    with pytest.raises(ScoreError, match="unseen_site=error"):
        combat_policy(_combat_pipeline("error"), X["meta__site"])


# ------------------------------------------------------------------------------------------------ the study
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("score")
        run_dir = make_study(folder)
    finally:
        torch.set_num_threads(previous)
    splits = json.loads((folder / "study" / "splits.json").read_text())
    return {"folder": folder, "run_dir": run_dir, "manifest": folder / "cohort" / "manifest.csv", "splits": splits}


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _refit(run_dir: Path) -> pd.DataFrame:
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    winners = joblib.load(run_dir / "model.joblib")["winners"]
    refit = predictions[(predictions.split == "refit") & (predictions.model == predictions.feature_set.map(winners))]
    return refit.set_index(["case_id", "feature_set"])


@pytest.mark.slow
def test_held_out_cases_get_the_fuse_runs_refit_probabilities_and_the_study_is_untouched(study, tmp_path):
    new = held_out_manifest(study["manifest"], tmp_path / "new" / "manifest.csv", splits=study["splits"])
    before = _snapshot(study["folder"] / "study")
    code = cli(["score", str(tmp_path / "new" / "manifest.csv"), "--study", str(study["run_dir"]),
                "--out", str(tmp_path / "scored")])
    assert code == 0
    assert _snapshot(study["folder"] / "study") == before  # nothing written into the study
    scored = pd.read_csv(tmp_path / "scored" / "predictions.csv", dtype={"case_id": str})
    parquet = pd.read_parquet(tmp_path / "scored" / "predictions.parquet")
    assert list(parquet.columns) == list(scored.columns) and np.allclose(parquet.prob__1, scored.prob__1)
    refit = _refit(study["run_dir"])
    assert set(scored.case_id) == set(new.case_id) and set(scored.feature_set) == set(refit.index.levels[1])
    ours = scored.set_index(["case_id", "feature_set"])
    columns = ["prob__0", "prob__1", "radscore__1"]
    np.testing.assert_allclose(ours[columns].to_numpy(), refit.loc[ours.index, columns].to_numpy(), rtol=0, atol=1e-8)
    assert (ours["pred"].astype(str) == refit.loc[ours.index, "pred"].astype(str)).all()
    assert ours["label"].isna().all() and ours["site_seen"].all()


def _bright_case(study, target: Path, site: str) -> pd.DataFrame:
    """One external ROI of the study, its ROI 400 HU brighter, at a new site, with its age missing."""
    frame = held_out_manifest(study["manifest"], target, cohorts=("external",), splits=study["splits"]).iloc[[0]]
    image = sitk.ReadImage(frame["image"].iloc[0])
    roi = sitk.GetArrayFromImage(sitk.ReadImage(frame["mask"].iloc[0])) > 0
    brighter = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) + 400 * roi).astype(np.int16))
    brighter.CopyInformation(image)
    path = target.parent / "bright_ct.nii.gz"
    sitk.WriteImage(brighter, str(path))
    frame = frame.assign(image=str(path), site=site, age=np.nan)
    frame.to_csv(target, index=False)
    return frame


@pytest.mark.slow
def test_one_roi_of_a_new_site_is_scored_with_its_warnings(study, tmp_path):
    from radfuse.data.manifest import read_manifest

    case = _bright_case(study, tmp_path / "new" / "manifest.csv", site="Z")
    scored = score_manifest(tmp_path / "new" / "manifest.csv", study["run_dir"], tmp_path / "scored")
    rows = scored.set_index("feature_set")
    assert len(rows) == len(rows.index.unique()) and (rows["case_id"] == case["case_id"].iloc[0]).all()

    # ComBat could not estimate a site from one ROI: the reference policy is used and said
    rad = rows.loc["rad"]
    assert not rad["site_seen"] and rad["combat_policy"].startswith("reference (estimate needs >= 2")
    assert "site 'Z' not among the study's training sites" in rad["warnings"]
    model = joblib.load(study["run_dir"] / "model.joblib")
    features = pd.read_parquet(tmp_path / "scored" / "extract" / "rad" / "radiomics.parquet")
    X = features.set_index("case_id")[[c for c in model["feature_columns"]["rad"] if c.startswith("rad__")]]
    X = X.assign(meta__site="Z")[model["feature_columns"]["rad"]]
    expected = _reference_combat(model["pipelines"]["rad"]).predict_proba(X)
    np.testing.assert_allclose(rad[["prob__0", "prob__1"]].to_numpy(float), expected[0], atol=1e-12)

    # out of range: the count is the features outside the study's training rows' min-max
    frame = read_manifest(study["manifest"])
    train_cases = frame.loc[frame.patient_id.map(study["splits"]["cohorts"]) == "train", "case_id"]
    train = pd.read_parquet(study["folder"] / "study" / "extract" / "default" / "radiomics.parquet")
    train = train.set_index("case_id").loc[train_cases, X.columns[:-1]]
    value = X.iloc[0, :-1].astype(float)
    outside = int(((value < train.min()) | (value > train.max())).sum())
    assert outside > 0 and rad["n_out_of_range"] == outside
    assert f"{outside} of {len(value)} feature values outside the training range" in rad["warnings"]

    # the missing age is filled by the pipeline's imputer with the training median, and said
    clinical = rows.loc["fused+clinical"]
    median = frame.loc[frame.case_id.isin(train_cases), "age"].median()
    assert clinical["clinical_filled"].startswith(f"age missing, filled with {median:.4g} (training median")
    assert "age missing" in clinical["warnings"] and rows.loc["rad", "clinical_filled"] == ""


@pytest.mark.slow
def test_an_exported_study_scores_identically_on_another_machine(study, tmp_path):
    """Export from a copy of the study, delete the copy, move the export: the folder must be self-contained."""
    from radfuse.export import main as export_main

    copy = tmp_path / "copy"
    shutil.copytree(study["folder"], copy, ignore=shutil.ignore_patterns("cache"))
    assert export_main([str(copy / "study" / "fuse" / "default"), "--to", str(tmp_path / "export")]) == 0
    shutil.rmtree(copy)
    moved = tmp_path / "elsewhere" / "study"
    shutil.move(tmp_path / "export", moved)
    texts = " ".join(p.read_text(errors="ignore") for p in moved.rglob("*") if p.suffix in (".json", ".yaml", ".csv"))
    assert "p000" not in texts and "c000" not in texts  # no patient or case id leaves with the study
    schema = json.loads((moved / "schema.json").read_text())
    assert schema["classes"] == ["0", "1"] and schema["sites"] == ["A", "B"] and "age" in schema["clinical"]

    held_out_manifest(study["manifest"], tmp_path / "new" / "manifest.csv", splits=study["splits"])
    _bright_case(study, tmp_path / "site" / "manifest.csv", site="Z")
    for name in ("new", "site"):
        exported = score_manifest(tmp_path / name / "manifest.csv", moved, tmp_path / f"{name}_exported")
        original = score_manifest(tmp_path / name / "manifest.csv", study["run_dir"], tmp_path / f"{name}_original")
        pd.testing.assert_frame_equal(exported, original, check_exact=False, rtol=0, atol=1e-12)

    from radfuse.export import StudyError, load_study

    with open(moved / "model.joblib", "ab") as model:  # a pickle changed after export is never loaded
        model.write(b"tampered")
    with pytest.raises(StudyError, match="sha256.*changed after export"):
        load_study(moved)


@pytest.mark.slow
def test_bad_new_manifests_and_output_folders_are_refused_with_the_fix(study, tmp_path, capsys):
    target = tmp_path / "new" / "manifest.csv"
    frame = held_out_manifest(study["manifest"], target, splits=study["splits"], drop_label=False)
    frame.assign(label=["7"] + list(frame.label.iloc[1:])).drop(columns=["sex"]).to_csv(target, index=False)
    args = ["score", str(target), "--study", str(study["run_dir"])]
    assert cli([*args, "--out", str(tmp_path / "scored")]) == 2
    error = capsys.readouterr().err
    assert f"case {frame.case_id.iloc[0]}" in error and "label '7' is not a configured class" in error
    assert "declared clinical column is missing" in error and "sex" in error
    assert cli([*args, "--out", str(study["run_dir"] / "scored")]) == 2
    assert "never writes into a study" in capsys.readouterr().err
    assert not (study["run_dir"] / "scored").exists()


@pytest.mark.slow
def test_predict_writes_beside_the_caller_not_into_the_model_folder(study, tmp_path, monkeypatch):
    from radfuse.predict import main as predict_main

    features = pd.read_parquet(study["folder"] / "study" / "extract" / "default" / "radiomics.parquet")
    frame = pd.read_csv(study["manifest"], dtype={"case_id": str})
    table = features.merge(frame[["case_id", "site", "age", "sex"]], on="case_id")
    deep = pd.read_parquet(study["folder"] / "study" / "extract" / "default" / "deep_crossfit.parquet")
    table.merge(deep, on="case_id").to_parquet(tmp_path / "rois.parquet")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(study["run_dir"])
    assert predict_main([str(study["run_dir"]), str(tmp_path / "rois.parquet")]) == 0
    assert _snapshot(study["run_dir"]) == before
    assert (tmp_path / "predictions_rois.parquet").is_file()


@pytest.mark.slow
def test_scoring_is_marked_complete_and_hashes_what_it_read(study, tmp_path):
    from radfuse import artifacts

    held_out_manifest(study["manifest"], tmp_path / "new" / "manifest.csv", splits=study["splits"])
    out = tmp_path / "scored"
    score_manifest(tmp_path / "new" / "manifest.csv", study["run_dir"], out)
    marker = json.loads((out / "COMPLETE.json").read_text())
    assert marker["stage"] == "score"
    assert {"predictions.csv", "predictions.parquet", "provenance.json", "extract/rad/radiomics.parquet",
            "extract/deep/deep_crossfit.parquet"} <= set(marker["files"])
    assert not [name for name in marker["files"] if name.startswith("cache/") or "/." in name or name[0] == "."]
    assert all(artifacts.file_sha256(out / name) == digest for name, digest in marker["files"].items())
    root, run_dir = study["folder"] / "study", study["run_dir"]
    read = {"manifest": tmp_path / "new" / "manifest.csv", "model": run_dir / "model.joblib",
            "study_provenance": run_dir / "provenance.json",
            "rad/radiomics_params": root / "extract" / "default" / "radiomics_params.json",
            "deep/crossfit_cv0": root / "train" / "cv0" / "last.ckpt",
            "deep/crossfit_cv1": root / "train" / "cv1" / "last.ckpt", "deep/splits": root / "splits.json"}
    inputs = json.loads((out / "provenance.json").read_text())["inputs"]
    assert inputs == {name: artifacts.file_sha256(path) for name, path in read.items()}


@pytest.mark.slow
def test_a_second_scoring_into_a_folder_in_use_is_refused_and_a_dead_ones_lock_taken_over(study, tmp_path, capsys):
    import socket
    import subprocess
    import sys

    from tests.misc.test_run_lock import CONTENDER, ENV

    manifest = tmp_path / "new" / "manifest.csv"
    held_out_manifest(study["manifest"], manifest, splits=study["splits"])
    out = tmp_path / "scored"
    holder = subprocess.Popen([sys.executable, "-c", CONTENDER, str(out), "0", "120"], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "won"
        assert cli(["score", str(manifest), "--study", str(study["run_dir"]), "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert f"run folder {out} is in use by another run: pid {holder.pid} on {socket.gethostname()}" in error
        assert [p.name for p in out.iterdir()] == [".lock"]  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    assert cli(["score", str(manifest), "--study", str(study["run_dir"]), "--out", str(out)]) == 0
    assert (out / "COMPLETE.json").is_file() and not (out / ".lock").exists()
