"""Shared pieces of the train-stage tests: a tiny cohort, composed configs, subprocess runs of train.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

from radfuse.stages.study import with_study_groups
from tests.data.cohort_factory import make_tiny_cohort

ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")
# The tiny cohort: two classes, no t_score column, 3 CV folds (each class has >= 3 training patients).
DATA_OVERRIDES = ["data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=3"]
SECRET = "SECRETCASE"


def tiny_cohort(folder: Path, n_patients: int = 12) -> Path:
    """make_tiny_cohort with distinctive ids, so a test can grep logger output for them."""
    manifest = make_tiny_cohort(folder, n_patients=n_patients)
    frame = pd.read_csv(manifest)
    frame["case_id"] = [f"{SECRET}{i:03d}" for i in range(len(frame))]
    frame["patient_id"] = [f"SECRETPATIENT{i:03d}" for i in range(len(frame))]
    frame.to_csv(manifest, index=False)
    return manifest


def compose_train(manifest: Path, out: Path, cache: Path, *overrides: str):
    """The train config as `python train.py ...` composes it (study presets' groups included)."""
    overrides = with_study_groups("train", [f"data.manifest={manifest}", f"paths.out={out}", f"paths.cache={cache}",
                                            *DATA_OVERRIDES, *overrides], Path(CONF))
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=overrides)


def run_train_py(manifest: Path, out: Path, cache: Path, *overrides: str, timeout: int = 600):
    flags = [o for o in overrides if o.startswith("-")]  # argparse wants -m before the overrides
    overrides = tuple(o for o in overrides if not o.startswith("-"))
    command = [sys.executable, "train.py", *flags, f"data.manifest={manifest}", f"paths.out={out}", f"paths.cache={cache}",
               *DATA_OVERRIDES, *overrides]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "disabled"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)
