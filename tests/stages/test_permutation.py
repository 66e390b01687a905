"""The end-to-end permutation check (issue 11): with the labels permuted across the patients of the training pool,
no label is linked to an image any more, so an honest chain -- fold CNNs, cross-fitted scores, radiomics, fusion
-- must find nothing: the training-cohort CV macro AUC of every feature set has a 95 % CI that contains 0.5. A
label reaching a choice it should not (a checkpoint picked on fold labels, a filter on all rows, an in-sample
deep block) would show up as a CV AUC above chance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radfuse.data.demo import make_cohort

ROOT = Path(__file__).resolve().parents[2]
DATA = ["data.split.n_folds=3", "data.size=32", "data.batch_size=8", "~data.clinical.t_score"]


def _run(*command: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_permuted_labels_give_chance_cross_validated_auc(tmp_path):
    manifest = make_cohort(tmp_path / "cohort", n_patients=60, seed=5)
    frame = pd.read_csv(manifest)
    pool = frame["cohort"].isna() | (frame["cohort"].astype(str) == "train")  # train/internal, split later
    patients = frame.loc[pool, ["patient_id", "label"]].drop_duplicates("patient_id")
    shuffled = dict(zip(patients["patient_id"], np.random.default_rng(11).permutation(patients["label"].to_numpy())))
    frame.loc[pool, "label"] = frame.loc[pool, "patient_id"].map(shuffled)
    frame.to_csv(manifest, index=False)
    common = [f"data.manifest={manifest}", f"paths.out={tmp_path / 'out'}", *DATA]

    _run("-m", "radfuse.stages.prepare", *common)
    _run("train.py", "-m", "experiment=demo", "data.fold=0,1,2", "run=perm${data.fold}", "trainer.max_epochs=4",
         "trainer.enable_progress_bar=false", *common)
    _run("extract.py", "radiomics=fast", "extract.deep.source=null", "extract.deep.crossfit.train_runs=perm",
         "extract.progress=false", *common)
    _run("fuse.py", "use_classifiers=[lr]", "report.enabled=false", "~feature_sets",
         "+feature_sets={rad:[rad],deep:[deep],fused:[rad,deep]}", "blocks.rad.icc=null", *common)
    metrics = json.loads((tmp_path / "out" / "fuse" / "default" / "metrics.json").read_text())
    for name, entry in metrics["feature_sets"].items():
        best = entry["selection"]["ranking"][0]
        low, high = best["cv_ci95"]
        assert low <= 0.5 <= high, (name, best)
