"""`make liu2025` and `make wang2025` on tiny demo cohorts (issue 12): the Makefile's own recipes, run by /bin/sh as
make runs them (tests/misc/doc_commands.py; make itself would build the environment first), with a `python` that
appends only sizes to each stage: fewer demo patients, 32 px crops, two training batches, a small bootstrap, one
classifier, fewer LASSO folds. Each ends with the report holding the paper's comparison."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from tests.misc.doc_commands import ROOT, Makefile, sized_python, stage_env

pytestmark = pytest.mark.slow

SMALL_LASSO = ["blocks.rad.lasso.n_splits=3", "blocks.rad.lasso.n_lambdas=5", "final.lasso.n_splits=3",
               "final.lasso.n_lambdas=5"]


def _sizes(n_patients: int, fuse: list[str] = (), extract: list[str] = ()) -> dict[str, list[str]]:
    data = [f"data.demo.n_patients={n_patients}", "data.size=32", "data.num_workers=0"]
    return {"prepare": data,
            "train": [*data, "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=2", "data.batch_size=4",
                      "trainer.log_every_n_steps=1"],
            "extract": [*data, "extract.workers=1", "extract.progress=false", *extract],
            "fuse": [*data, "report.n_resamples=50", "n_jobs=1", "use_classifiers=[lr]",
                     "classifiers.lr.grid.C=[1.0]", *SMALL_LASSO, *fuse]}


def _run_target(tmp_path, target: str, variables: dict[str, str], sizes: dict[str, list[str]], weights_dir):
    bin_dir = tmp_path / "bin"
    sized_python(bin_dir)
    env = stage_env(RADFUSE_TEST_SIZES=json.dumps(sizes), RADFUSE_WEIGHTS_DIR=str(weights_dir),
                    RADFUSE_OUT=str(tmp_path / "outputs"))
    results = Makefile.read().run_recipe(target, {"BIN": str(bin_dir), **variables}, ROOT, env)
    log = "\n".join(f"$ {r.args[-1]}\n{r.stdout}\n{r.stderr}" for r in results)
    assert all(r.returncode == 0 for r in results), log[-12000:]
    return log


def _delong_pairs(run_dir) -> set[frozenset]:
    delong = pd.read_csv(run_dir / "delong.csv")
    paired = delong[(delong["type"] == "paired") & delong["p_value"].notna()]
    return {frozenset((a.split("/")[0], b.split("/")[0])) for a, b in zip(paired.model1, paired.model2)}


def test_make_liu2025_compares_radimagenet_and_imagenet_in_the_report(tmp_path):
    """Both weights files present (random ResNet-50s, one per backbone): each backbone's fold CNNs, their
    cross-fitted scores fused with radiomics, paired DeLong between the two deep blocks and the two fused models."""
    import torch

    from radfuse.models import create_backbone

    weights = tmp_path / "weights"
    weights.mkdir()
    for seed, name in enumerate(("radimagenet_resnet50.pt", "imagenet_resnet50.pth")):
        torch.manual_seed(seed)
        torch.save(create_backbone("resnet50", 2, 3, 1000).state_dict(), weights / name)
    out = tmp_path / "liu"
    # 42 patients: 3 training patients of the rare class 2, one in each of 3 folds (LIU_FOLDS), so every fold's
    # training rows hold 2 of them (the LASSO's own CV needs 2 of each class)
    log = _run_target(tmp_path, "liu2025", {"LIU_OUT": str(out), "LIU_EPOCHS": "1", "LIU_FOLDS": "3"}, _sizes(42),
                      weights)
    assert "trains from scratch" not in log
    for backbone in ("radimagenet", "imagenet"):
        assert {f"{backbone}_cv{k}" for k in range(3)} <= {p.name for p in (out / "train").iterdir()}
        assert (out / "extract" / backbone / "deep_crossfit.parquet").is_file()
    run_dir = out / "fuse" / "liu2025"
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert {"rad", "deep", "fused", "deep_imagenet", "fused_imagenet"} <= set(metrics["feature_sets"])
    pairs = _delong_pairs(run_dir)
    assert frozenset(("deep", "deep_imagenet")) in pairs and frozenset(("fused", "fused_imagenet")) in pairs
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert {"radscore__0", "radscore__1", "radscore__2"} <= set(predictions.columns)  # the DTL rad-score
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "deep_imagenet" in report and "DeLong" in report


def test_make_wang2025_compares_the_margins_in_the_report(tmp_path):
    """Two margins (WANG_MARGINS): one 3D CNN each, its stage3 embeddings, one feature set per margin beside
    radiomics; the report has each margin's AUC with its CI, DeLong between the margins and the decision curves.
    Radiomics uses the fast preset here (wang2025's 1,874 features take ~10 s per ROI; its own tests cover it)."""
    out = tmp_path / "wang"
    # 36 patients: 6 chronic training patients for the preset's 5 folds, 2 chronic in the internal cohort
    sizes = _sizes(36, extract=["radiomics=fast"])
    log = _run_target(tmp_path, "wang2025", {"WANG_OUT": str(out), "WANG_EPOCHS": "1", "WANG_MARGINS": "0 6"},
                      sizes, tmp_path / "no_weights")
    assert "caution" in log  # single-CNN embeddings: fuse says the training-cohort CV is optimistic
    run_dir = out / "fuse" / "wang2025"
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["feature_sets"]) == {"rad", "margin_0", "margin_6"}
    for margin in ("margin_0", "margin_6"):
        auc = metrics["models"][f"{margin}/lr"]["sets"]["internal"]["overall"]["macro_auc"]
        assert 0.0 <= auc["estimate"] <= 1.0 and len(auc["ci_delong"]) == 2
    assert frozenset(("margin_0", "margin_6")) in _delong_pairs(run_dir)
    assert metrics["decision_curves"] and any(p.name.startswith("dca_") for p in (run_dir / "figures").iterdir())
    config = json.loads(json.dumps(metrics["config"]))
    assert config["blocks"]["rad"]["combat"] is None and config["use_classifiers"] == ["lr"]
    assert os.path.isfile(out / "extract" / "margin6" / "deep_stage3.parquet")
