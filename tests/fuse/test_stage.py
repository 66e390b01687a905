"""The fuse stage from its real Hydra config on a tiny cohort, and `python -m radfuse.predict` on its output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from radfuse.artifacts import PREDICTION_COLUMNS, prob_columns
from radfuse.fuse.radscore import radscore_columns
from radfuse.predict import score
from radfuse.stages import fuse
from tests.data.cohort_factory import make_tiny_cohort

ROOT = Path(__file__).resolve().parents[2]


def _tables(manifest: Path, folder: Path) -> dict[str, Path]:
    """Feature tables as extract writes them (key case_id, rad__/deep__ columns), with a planted class signal."""
    frame = pd.read_csv(manifest, dtype={"case_id": str})
    rng = np.random.default_rng(0)
    y = frame.label.astype(int).to_numpy()[:, None]
    rad = pd.DataFrame(rng.normal(size=(len(frame), 12)) + 1.5 * y * (np.arange(12) < 2),
                       columns=[f"rad__original_f{i}" for i in range(12)])
    deep = pd.DataFrame(rng.normal(size=(len(frame), 10)) + 1.5 * y * (np.arange(10) < 2),
                        columns=[f"deep__penultimate_{i}" for i in range(10)])
    icc = pd.DataFrame({"feature": rad.columns, "icc2_1": np.r_[0.95, 0.9, np.full(9, 0.85), 0.5]})
    paths = {"rad": folder / "radiomics.parquet", "deep": folder / "deep_penultimate.parquet",
             "icc": folder / "icc.parquet"}
    rad.insert(0, "case_id", frame.case_id)
    deep.insert(0, "case_id", frame.case_id)
    for name, table in (("rad", rad), ("deep", deep), ("icc", icc)):
        table.to_parquet(paths[name], index=False)
    return paths


def _cfg(manifest, out, paths, *extra):
    small = "n_splits=3", "n_lambdas=5"
    final_lasso = [] if "final=scale" in extra else [f"final.lasso.{s}" for s in small]
    overrides = [f"data.manifest={manifest}", f"paths.out={out}", "data.classes=[0,1]", "~data.clinical.t_score",
                 "data.split.n_folds=3", f"tables.rad={paths['rad']}", f"tables.deep={paths['deep']}",
                 f"icc_table={paths['icc']}", "use_classifiers=[lr,knn]", "classifiers.lr.grid.C=[1.0]",
                 "classifiers.knn.grid.estimator__n_neighbors=[5]", "classifiers.knn.grid.estimator__weights=[uniform]",
                 "deep_features=embeddings", "blocks.deep.pca.n_components=3", "n_jobs=1",
                 *[f"blocks.rad.lasso.{s}" for s in small], *final_lasso, *extra]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("fuse", overrides=overrides)


def test_stage_writes_every_output_and_predict_scores_new_rois(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=40)
    paths = _tables(manifest, tmp_path)
    cfg = _cfg(manifest, tmp_path / "out", paths)
    fuse.run(cfg)
    run_dir = tmp_path / "out" / "fuse" / "default"
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert list(predictions.columns) == [*PREDICTION_COLUMNS, *prob_columns(["0", "1"]), *radscore_columns(["0", "1"])]
    assert set(predictions.feature_set) == {"rad", "deep", "fused", "fused+clinical"}
    assert set(predictions.model) == {"lr", "knn"} and set(predictions.cohort) >= {"train", "external"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["feature_sets"]["fused"]["classifiers"]) == {"lr", "knn"}
    assert "external_macro_auc" in metrics["feature_sets"]["rad"]
    assert len(pd.read_csv(run_dir / "cv_results.csv")) == 8  # 4 feature sets x 2 classifiers x 1 candidate
    model = joblib.load(run_dir / "model.joblib")
    assert model["classes"] == ["0", "1"] and "scikit-learn" in model["versions"]
    fused = model["pipelines"]["fused"]
    pipelines = [fused, *fused.named_steps["blocks"].named_transformers_.values()]
    assert all(p.memory is None for p in pipelines if hasattr(p, "memory"))  # no link to the deleted cache
    assert "rad__original_f11" not in model["pipelines"]["rad"][:-1].get_feature_names_out()  # ICC 0.5: dropped
    assert (run_dir / "config.yaml").is_file()
    report = (run_dir / "report.html").read_text()  # the evaluation ran on this run's predictions
    assert "data:image/png;base64" in report and "evaluate_keys" in metrics

    # Score new ROIs: the manifest's site/clinical columns under their own names next to the features.
    frame = pd.read_csv(manifest, dtype={"case_id": str})
    new = pd.read_parquet(paths["rad"]).merge(pd.read_parquet(paths["deep"]), on="case_id")
    new = new.merge(frame[["case_id", "site", "age", "sex"]], on="case_id")
    scored = score(model, new)
    refit = predictions[(predictions.split == "refit")]
    for fs in ("rad", "fused+clinical"):
        ours = scored[scored.feature_set == fs].set_index("case_id")["prob__1"]
        rows = refit[(refit.feature_set == fs) & (refit.model == model["winners"][fs])]
        theirs = rows.set_index("case_id")["prob__1"]
        np.testing.assert_allclose(ours.loc[theirs.index], theirs, atol=1e-9)

    # A table that lacks columns is refused, naming them.
    broken = tmp_path / "broken.parquet"
    new.drop(columns=["rad__original_f0", "age"]).to_parquet(broken)
    result = subprocess.run([sys.executable, "-m", "radfuse.predict", str(run_dir), str(broken)],
                            capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=ROOT, env={**os.environ, "PYTHONPATH": "src"})
    assert result.returncode == 2
    assert "rad__original_f0" in result.stderr and "'age'" in result.stderr


def test_final_scale_with_no_lasso_left_runs_through_the_stage(tmp_path):
    """`python fuse.py final=scale`: the deep feature set has no LASSO step, so nothing consumes the groups."""
    manifest = make_tiny_cohort(tmp_path / "cohort", n_patients=30)
    paths = _tables(manifest, tmp_path)
    cfg = _cfg(manifest, tmp_path / "out", paths, "final=scale", "report.enabled=false", "use_classifiers=[lr]",
               "blocks.rad.lasso=null")
    assert "lasso" not in [k for k, v in cfg.final.items() if v is not None]
    result = fuse.run(cfg)
    assert set(result.metrics["feature_sets"]) == {"rad", "deep", "fused", "fused+clinical"}
    assert (tmp_path / "out" / "fuse" / "default" / "predictions.parquet").is_file()


def test_default_deep_block_is_the_cross_fitted_scores_and_a_missing_table_says_how_to_make_it(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "data")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("fuse", overrides=[f"data.manifest={manifest}", f"paths.out={tmp_path / 'out'}",
                                         "data.classes=[0,1]", "~data.clinical.t_score", "data.split.n_folds=3",
                                         "blocks.rad.icc=null"])  # no mask2: the pre-flight would refuse the ICC
    assert cfg.tables.deep.endswith("/extract/default/deep_crossfit.parquet")
    assert list(cfg.blocks.deep) == ["impute", "scale"]  # a few class scores: no PCA
    cfg.tables.rad = str(_tables(manifest, tmp_path)["rad"])
    with pytest.raises(FileNotFoundError) as err:
        fuse.run(cfg)
    message = str(err.value)
    assert "deep_crossfit.parquet" in message and "data.fold=0,1,2,3,4" in message
    assert "extract.deep.crossfit.train_runs" in message and "deep_features=embeddings" in message


def test_embeddings_follow_the_extracted_layer_and_a_missing_table_lists_the_deep_tables_there(tmp_path):
    manifest = make_tiny_cohort(tmp_path / "data")
    out = tmp_path / "out"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("fuse", overrides=[f"data.manifest={manifest}", f"paths.out={out}", "data.classes=[0,1]",
                                         "~data.clinical.t_score", "data.split.n_folds=3", "extract_run=wang",
                                         "deep_features=embeddings", "deep_layer=layer3.1.conv2"])
    assert cfg.tables.deep == str(out / "extract" / "wang" / "deep_layer3.1.conv2.parquet")
    folder = out / "extract" / "wang"
    folder.mkdir(parents=True)
    paths = _tables(manifest, folder)  # radiomics.parquet and deep_penultimate.parquet
    pd.read_parquet(paths["deep"]).to_parquet(folder / "deep_stage3.parquet")
    pd.read_parquet(paths["deep"]).to_parquet(folder / "deep_crossfit.parquet")
    cfg.icc_table = str(paths["icc"])
    with pytest.raises(FileNotFoundError) as err:
        fuse.run(cfg)
    message = str(err.value)
    assert "deep_layer3.1.conv2.parquet" in message
    for name in ("deep_penultimate.parquet", "deep_stage3.parquet", "deep_crossfit.parquet"):
        assert name in message
    assert "deep_layer=stage3" in message and "deep_layer=penultimate" in message
    assert "deep_features=crossfit" in message
