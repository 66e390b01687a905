"""Every `final` option and every rad-block step left out in turn, from the real Hydra config, through run_fusion.

The patient `groups` must reach the LASSO steps that consume them and be dropped when no step is left to consume
them (e.g. `final=scale` on a feature set without the rad block's LASSO)."""

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.feature_selection import RFECV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from radfuse.fuse.experiment import FusionSetup, run_fusion
from radfuse.fuse.lasso import LassoSelector
from tests.fuse.helpers import lr_spec, small_design

ROOT = Path(__file__).resolve().parents[2]
RAD_STEPS = list(OmegaConf.load(ROOT / "conf" / "block" / "rad.yaml"))
FINAL_OPTIONS = sorted(p.stem for p in (ROOT / "conf" / "final").glob("*.yaml"))
DEEP_OPTIONS = [(option, step) for option, block in (("embeddings", "deep"), ("crossfit", "deep_scores"))
                for step in [None, *OmegaConf.load(ROOT / "conf" / "block" / f"{block}.yaml")]]
SMALL_LASSO = ("n_splits=3", "n_lambdas=5")


def _blocks_and_final(final: str, null_step: str | None, icc_table: Path, deep_features: str = "embeddings",
                      null_deep_step: str | None = None):
    overrides = [f"final={final}", f"deep_features={deep_features}", f"icc_table={icc_table}"]
    if deep_features == "embeddings" and null_deep_step != "pca":
        overrides.append("blocks.deep.pca.n_components=3")
    if null_deep_step is not None:
        overrides.append(f"blocks.deep.{null_deep_step}=null")
    if null_step != "lasso":
        overrides += [f"blocks.rad.lasso.{s}" for s in SMALL_LASSO]
    if null_step is not None:
        overrides.append(f"blocks.rad.{null_step}=null")
    if OmegaConf.load(ROOT / "conf" / "final" / f"{final}.yaml").get("lasso") is not None:
        overrides += [f"final.lasso.{s}" for s in SMALL_LASSO]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("fuse", overrides=overrides)
    return {"rad": instantiate(cfg.blocks.rad), "deep": instantiate(cfg.blocks.deep)}, instantiate(cfg.final)


@pytest.mark.parametrize(("deep_features", "null_deep_step"), DEEP_OPTIONS)
def test_fuse_runs_with_each_deep_block_option_and_step_left_out_under_final_scale(tmp_path, deep_features,
                                                                                   null_deep_step):
    design = small_design(n_classes=2, n_rois=90, n_rad=8, n_deep=6, n_informative=2)
    blocks, final_steps = _blocks_and_final("scale", "lasso", tmp_path / "unused.parquet", deep_features,
                                            null_deep_step)
    if null_deep_step is not None and all(v is None for v in blocks["deep"].values()):
        with pytest.raises(ValueError, match="block 'deep'.*feature_sets"):
            run_fusion(design, FusionSetup(classes=["0", "1"], blocks={"deep": blocks["deep"]}, final=final_steps,
                                           feature_sets={"deep": ["deep"]}, classifiers=[lr_spec({"C": [1.0]})]))
        return
    setup = FusionSetup(classes=["0", "1"], blocks={"deep": blocks["deep"]}, final=final_steps, n_splits=3,
                        feature_sets={"deep": ["deep"]}, classifiers=[lr_spec({"C": [1.0]})], n_jobs=1)
    assert 0.0 <= run_fusion(design, setup).metrics["feature_sets"]["deep"]["cv_macro_auc"] <= 1.0


def test_the_options_cover_the_config_groups():
    assert {"lasso", "scale"} <= set(FINAL_OPTIONS) and {"combat", "icc", "lasso"} <= set(RAD_STEPS)


@pytest.mark.parametrize("final", FINAL_OPTIONS)
@pytest.mark.parametrize("null_step", [None, *RAD_STEPS])
def test_fuse_runs_with_every_final_option_and_each_rad_step_left_out(tmp_path, monkeypatch, final, null_step):
    lasso_groups = []
    original_fit = LassoSelector.fit

    @functools.wraps(original_fit)
    def spy_fit(self, X, y, groups=None):
        lasso_groups.append(groups)
        return original_fit(self, X, y, groups=groups)

    monkeypatch.setattr(LassoSelector, "fit", spy_fit)
    design = small_design(n_classes=2, n_rois=90, n_rad=8, n_deep=6, n_informative=2)
    rad_columns = [c for c in design.X.columns if c.startswith("rad__")]
    icc = tmp_path / "icc.parquet"
    pd.DataFrame({"feature": rad_columns, "icc2_1": np.linspace(0.99, 0.7, len(rad_columns))}).to_parquet(icc)
    blocks, final_steps = _blocks_and_final(final, null_step, icc)
    assert null_step is None or blocks["rad"][null_step] is None
    setup = FusionSetup(classes=["0", "1"], blocks=blocks, final=final_steps, n_splits=3, n_jobs=1,
                        feature_sets={"rad": ["rad"], "deep": ["deep"], "fused": ["rad", "deep"]},
                        classifiers=[lr_spec({"C": [1.0]})])
    result = run_fusion(design, setup)
    assert set(result.predictions.feature_set) == {"rad", "deep", "fused"}
    for fs, metrics in result.metrics["feature_sets"].items():
        assert 0.0 <= metrics["cv_macro_auc"] <= 1.0, fs
    has_lasso = blocks["rad"]["lasso"] is not None or final_steps.get("lasso") is not None
    assert bool(lasso_groups) == has_lasso
    assert all(g is not None for g in lasso_groups)  # every LASSO fit got the patients of its training rows


class _GroupsSeen(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """A step of a user's own whose fit takes `groups`: passes X through and remembers what it was given."""

    seen: list = []

    def fit(self, X, y=None, groups=None):
        _GroupsSeen.seen.append(None if groups is None else len(np.unique(groups)))
        self.feature_names_in_, self.n_features_in_ = np.asarray(X.columns, dtype=object), X.shape[1]
        return self

    def transform(self, X):
        return X


def test_groups_reach_other_consumers_than_the_lasso():
    """An RFECV with a group splitter (a router) and a step of one's own that takes `groups` both get them."""
    design = small_design(n_classes=2, n_rois=90, n_rad=8, n_deep=6, n_informative=2)
    _GroupsSeen.seen = []
    setup = FusionSetup(classes=["0", "1"], blocks={"deep": {"scale": StandardScaler()}}, n_splits=3, n_jobs=1,
                        final={"own": _GroupsSeen(), "rfe": RFECV(LogisticRegression(), cv=GroupKFold(3))},
                        feature_sets={"deep": ["deep"]}, classifiers=[lr_spec({"C": [1.0]})], cache=False)
    result = run_fusion(design, setup)  # RFECV's GroupKFold raises when groups do not reach it
    assert result.metrics["feature_sets"]["deep"]["cv_macro_auc"] > 0.5
    assert _GroupsSeen.seen and all(n is not None and n > 3 for n in _GroupsSeen.seen)
