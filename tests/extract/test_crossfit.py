"""Cross-fitted CNN scores: the combination rule on hand-made tables, the leak it removes, and the extract stage
end to end on fold checkpoints of a tiny cohort (every row checked against the fold model's own forward pass)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from radfuse.artifacts import COMPLETE_FILE, RunIncomplete
from radfuse.extract.crossfit import cross_fit, scoring_folds
from tests.extract.crossfit_runs import extract_cfg as _extract_cfg
from tests.extract.crossfit_runs import fold_run as _fold_run
from tests.extract.crossfit_runs import small_cohort as _cohort


def _table(cases, values):
    frame = pd.DataFrame(np.asarray(values, dtype=float), columns=["deep__logit_0", "deep__logit_1"])
    frame.insert(0, "case_id", cases)
    return frame


def test_train_cases_take_their_fold_model_and_others_the_mean():
    cases = ["a", "b", "c", "d"]
    folds = pd.Series([0, 1, 0, np.nan], index=cases)  # d is outside the train cohort
    m0 = _table(cases, [[1, -1], [2, -2], [3, -3], [4, -4]])
    m1 = _table(cases, [[10, -10], [20, -20], [30, -30], [40, -40]])
    out = cross_fit({0: m0, 1: m1}, folds).set_index("case_id")
    expected = [[1, -1], [20, -20], [3, -3], [22, -22]]  # d: (4 + 40) / 2
    np.testing.assert_allclose(out.loc[cases].to_numpy(), expected)


def test_scoring_folds_name_the_models_whose_scores_cross_fit_gives_a_case():
    """The rule Grad-CAM panels follow to map a case with the CNN(s) that scored it: one model per case here is
    a one-hot score, so cross_fit's row says which models it averaged."""
    cases, folds = ["a", "b", "c"], pd.Series([0.0, 1.0, np.nan], index=["a", "b", "c"])
    onehot = {k: _table(cases, [[float(k == 0), float(k == 1)]] * 3) for k in (0, 1)}
    out = cross_fit(onehot, folds).set_index("case_id")
    for case in cases:
        used = scoring_folds(folds[case], [0, 1], case)
        np.testing.assert_allclose(out.loc[case].to_numpy(), np.mean([onehot[k].iloc[0, 1:] for k in used], 0))
    assert scoring_folds(None, [1, 0]) == [0, 1] and scoring_folds(1.0, [0, 1]) == [1]
    with pytest.raises(ValueError, match=r"case 'x' is a training case of CV fold 2.*data.fold=2"):
        scoring_folds(2.0, [0, 1], "x")


def test_scores_of_a_memorising_model_stop_leaking_when_cross_fitted():
    """A model that memorised its training labels scores its own training cases perfectly and new cases at
    chance. Fitted in-sample (one model on all folds) the training AUC is 1; cross-fitted it is chance, as for
    any new case: the classical stage then sees the deep block as it will be on new data."""
    rng = np.random.default_rng(0)
    n, k = 400, 5
    cases = [f"c{i}" for i in range(n)]
    labels = rng.integers(0, 2, n)
    folds = pd.Series(rng.integers(0, k, n).astype(float), index=cases)

    def memoriser(seen: np.ndarray) -> pd.DataFrame:
        score = np.where(seen, labels * 2.0 - 1.0, rng.normal(size=n))
        return _table(cases, np.c_[-score, score])

    in_sample = memoriser(np.ones(n, bool))
    assert roc_auc_score(labels, in_sample["deep__logit_1"]) == 1.0
    crossed = cross_fit({f: memoriser(folds.to_numpy() != f) for f in range(k)}, folds)
    auc = roc_auc_score(labels, crossed["deep__logit_1"])
    assert 0.4 < auc < 0.6


def test_missing_fold_model_or_case_is_named():
    cases = ["a", "b"]
    folds = pd.Series([0.0, 1.0], index=cases)
    with pytest.raises(ValueError, match=r"one model per CV fold \[0, 1\].*data.fold=0,1"):
        cross_fit({0: _table(cases, [[0, 0], [0, 0]])}, folds)
    with pytest.raises(ValueError, match=r"fold-1 model has no scores for cases \['b'\]"):
        cross_fit({0: _table(cases, [[0, 0], [0, 0]]), 1: _table(["a"], [[0, 0]])}, folds)


# ------------------------------------------------------------------------------------------------ the stage
models = pytest.importorskip("radfuse.models")


def test_stage_writes_out_of_fold_scores_of_the_fold_checkpoints(tmp_path):
    from radfuse.data.datamodule import cached_dataset, manifest_items
    from radfuse.stages import extract as stage
    from radfuse.stages.common import crop_config, load_cohort

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv")
    fold_models = {k: _fold_run(out, f"cv{k}", k, cfg) for k in (0, 1)}
    summary = stage.run(cfg)
    assert Path(summary["crossfit"]).name == "deep_crossfit.parquet"
    table = pd.read_parquet(summary["crossfit"]).set_index("case_id")
    assert list(table.columns) == ["deep__logit_0", "deep__logit_1"] and len(table) == 10

    cohort = load_cohort(cfg)
    frame = cohort.frame.reset_index(drop=True)
    items = manifest_items(frame, cohort.classes)
    crops = torch.stack([cached_dataset(items, crop_config(cfg.data), None)[i]["image"] for i in range(len(frame))])
    with torch.no_grad():
        logits = {k: m(crops).numpy() for k, m in fold_models.items()}
    centred = {k: v - v.mean(axis=1, keepdims=True) for k, v in logits.items()}
    folds = cohort.splits.fold_of(frame).to_numpy()
    cohorts = cohort.splits.cohort_of(frame).to_numpy()
    assert set(cohorts) == {"train", "external"} and set(folds[cohorts == "train"]) == {0, 1}
    for i, case in enumerate(frame["case_id"]):
        expected = centred[int(folds[i])][i] if cohorts[i] == "train" else (centred[0][i] + centred[1][i]) / 2
        np.testing.assert_allclose(table.loc[case].to_numpy(), expected, atol=1e-4, err_msg=case)


def test_stage_refuses_a_run_trained_on_every_fold(tmp_path):
    from radfuse.stages import extract as stage

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=[cv0,full]")
    _fold_run(out, "cv0", 0, cfg)
    _fold_run(out, "full", None, cfg)
    with pytest.raises(ValueError, match="'full' was trained on the whole train cohort"):
        stage.run(cfg)
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs='cv{fold}'")
    with pytest.raises(FileNotFoundError, match="cv1.*train the fold runs first"):
        stage.run(cfg)


def test_a_new_cohort_scored_with_a_finished_studys_fold_cnns_gets_their_mean(tmp_path):
    """Scoring a new cohort: its patient ids may repeat the study's (p00 ...), yet no case was seen by any fold CNN,
    so every case gets the mean of the fold CNNs, never one fold model's scores."""
    from radfuse.stages import extract as stage

    study_manifest, study_out = _cohort(tmp_path / "study"), tmp_path / "study_out"
    study_cfg = _extract_cfg(study_out, study_manifest, "extract.deep.crossfit.train_runs=cv")
    for k in (0, 1):
        _fold_run(study_out, f"cv{k}", k, study_cfg)
    study = pd.read_parquet(stage.run(study_cfg)["crossfit"]).set_index("case_id")

    new_cfg = _extract_cfg(tmp_path / "new_out", study_manifest, "extract.deep.crossfit.train_runs=cv",
                           f"extract.deep.crossfit.train_out={study_out}")
    new = pd.read_parquet(stage.run(new_cfg)["crossfit"]).set_index("case_id")
    external = ["c08", "c09"]  # patient p04: outside the study's training cohort, so already the mean there
    np.testing.assert_allclose(new.loc[external].to_numpy(), study.loc[external].to_numpy(), atol=1e-5)
    train_cases = [c for c in study.index if c not in external]
    assert not np.allclose(new.loc[train_cases].to_numpy(), study.loc[train_cases].to_numpy(), atol=1e-3)

    with pytest.raises(FileNotFoundError, match="splits.json does not exist"):
        stage.run(_extract_cfg(tmp_path / "other", study_manifest, "extract.deep.crossfit.train_runs=cv",
                               f"extract.deep.crossfit.train_out={tmp_path / 'nowhere'}"))


@pytest.mark.parametrize("problem, match", [
    ({"last_epoch": 1}, r"cv1.*holds epoch 1 of a run that trained to epoch 4.*last epoch"),
    ({"callbacks": {"early_stopping": {"monitor": "val/auc"}}}, r"cv1.*early stopping"),
])
def test_stage_refuses_fold_scores_from_an_epoch_the_folds_labels_chose(tmp_path, problem, match):
    """Fold k's CNN must not be picked (best epoch, early stopping) with fold k's labels: those are the labels of
    the cases it scores."""
    from radfuse.stages import extract as stage

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv")
    _fold_run(out, "cv0", 0, cfg)
    _fold_run(out, "cv1", 1, cfg, **problem)
    with pytest.raises(ValueError, match=match):
        stage.run(cfg)
    assert not (out / "extract" / "default" / "deep_crossfit.parquet").exists()


def test_stage_records_where_each_deep_table_came_from(tmp_path):
    from radfuse.stages import extract as stage

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv")
    for k in (0, 1):
        _fold_run(out, f"cv{k}", k, cfg)
    stage.run(cfg)
    sources = json.loads((out / "extract" / "default" / "deep_sources.json").read_text())
    runs = sources["deep_crossfit.parquet"]["runs"]
    assert {r: (v["epoch"], v["chosen_on_validation"]) for r, v in runs.items()} == {"cv0": (4, None),
                                                                                    "cv1": (4, None)}


def test_stage_refuses_a_fold_run_that_did_not_finish(tmp_path):
    """A killed train run: checkpoints and config.yaml, no COMPLETE.json. Its folder and the fix are named."""
    from radfuse.stages import extract as stage

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv")
    _fold_run(out, "cv0", 0, cfg)
    _fold_run(out, "cv1", 1, cfg)
    (out / "train" / "cv1" / COMPLETE_FILE).unlink()
    with pytest.raises(RunIncomplete, match=r"train/cv1 has no COMPLETE.json.*ckpt_path=last"):
        stage.run(cfg)
    assert not (out / "extract" / "default" / COMPLETE_FILE).exists()


def test_stage_refuses_a_checkpoint_changed_after_its_run_finished(tmp_path):
    from radfuse.stages import extract as stage

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv")
    _fold_run(out, "cv0", 0, cfg)
    _fold_run(out, "cv1", 1, cfg)
    checkpoint = out / "train" / "cv0" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    with pytest.raises(RunIncomplete, match=r"last.ckpt changed since the train run"):
        stage.run(cfg)


class Killed(Exception):
    """Stands in for a kill in the middle of the fold CNNs' forward passes."""


def test_interrupted_cross_fit_reruns_only_the_batches_not_yet_scored(tmp_path, monkeypatch):
    from radfuse.stages import extract as stage
    from radfuse.stages import extract_deep

    manifest, out = _cohort(tmp_path), tmp_path / "out"
    cfg = _extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv", "extract.deep.batch_size=4")
    for k in (0, 1):
        _fold_run(out, f"cv{k}", k, cfg)
    real, scored, budget = extract_deep.class_scores, [], {"batches": 4}

    def counting(classifier, batches, **kwargs):
        batches = list(batches)
        if budget["batches"] is not None and budget["batches"] <= 0:
            raise Killed
        if budget["batches"] is not None:
            budget["batches"] -= 1
        scored.extend(c for b in batches for c in b["case_id"])
        return real(classifier, batches, **kwargs)

    monkeypatch.setattr(extract_deep, "class_scores", counting)
    with pytest.raises(Killed):  # 10 ROIs in 3 batches per fold: killed after fold 0 and one batch of fold 1
        stage.run(cfg)
    assert len(scored) == 10 + 4 and not (out / "extract" / "default" / COMPLETE_FILE).exists()
    scored.clear()
    budget["batches"] = None
    first = pd.read_parquet(stage.run(cfg)["crossfit"])
    assert len(scored) == 6  # only fold 1's two unfinished batches ran again
    scored.clear()
    second = pd.read_parquet(stage.run(cfg)["crossfit"])
    assert scored == [] and (out / "extract" / "default" / COMPLETE_FILE).is_file()
    pd.testing.assert_frame_equal(first, second)
