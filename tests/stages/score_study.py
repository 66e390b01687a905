"""A tiny finished study made with the real stages (train fold CNNs, extract, fuse), for the scoring tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir

from radfuse.stages.study import with_study_groups
from tests.data.cohort_factory import make_tiny_cohort

ROOT = Path(__file__).resolve().parents[2]
CONF = str(ROOT / "conf")
DATA = ["data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=2", "data.size=32"]


def _compose(stage: str, overrides: list[str]):
    overrides = with_study_groups(stage, overrides, Path(CONF))
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(stage, overrides=overrides)


def make_study(folder: Path, n_patients: int = 24) -> Path:
    """Train two fold CNNs, extract radiomics + cross-fitted scores, fuse with lr; return the fuse run folder."""
    from radfuse.stages import extract, fuse, train

    manifest = make_tiny_cohort(folder / "cohort", n_patients=n_patients)
    frame = pd.read_csv(manifest)
    frame["site"] = ["A" if (i // 2) % 2 else "B" for i in range(len(frame))]  # both sites in every class and fold
    frame.to_csv(manifest, index=False)
    out = folder / "study"
    common = [f"data.manifest={manifest}", f"paths.out={out}", *DATA]
    for fold in (0, 1):
        train.run(_compose("train", [*common, "debug=tiny", "model.arch=shufflenet_v2_x0_5",
                                     f"data.fold={fold}", f"run=cv{fold}"]))
    # one ROI per CNN batch: a float32 convolution's result depends on the batch it runs in (~1e-8), and scoring
    # reproduces the study's scores bit for bit only when both ran each ROI alone
    extract.run(_compose("extract", [*common, "radiomics=fast", "extract.progress=false", "extract.deep.source=null",
                                     "extract.deep.crossfit.train_runs=cv", "extract.deep.batch_size=1"]))
    fuse.run(_compose("fuse", [*common, "use_classifiers=[lr]", "classifiers.lr.grid.C=[1.0]", "report.enabled=false",
                               "blocks.rad.icc=null", "blocks.rad.lasso.n_splits=2", "blocks.rad.lasso.n_lambdas=4",
                               "final.lasso.n_splits=2", "final.lasso.n_lambdas=4", "n_jobs=1"]))
    return out / "fuse" / "default"


def held_out_manifest(study_manifest: Path, target: Path, cohorts=("internal", "external"),
                      splits: dict | None = None, drop_label: bool = True) -> pd.DataFrame:
    """The study's held-out rows as a new manifest (absolute paths, no label column), written to `target`."""
    from radfuse.data.manifest import read_manifest

    frame = read_manifest(study_manifest)
    cohort = frame["patient_id"].map(splits["cohorts"]) if splits else frame["cohort"]
    rows = frame[cohort.isin(cohorts).to_numpy()].drop(columns=["cohort"])
    if drop_label:
        rows = rows.drop(columns=["label"])
    target.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(target, index=False)
    return rows
