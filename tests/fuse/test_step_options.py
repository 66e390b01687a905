"""Every `final` option and every rad-block step left out in turn, from the real Hydra config, through run_fusion;
every `final`, `deep_features` and `block` option through the fuse stage itself (as `python fuse.py` runs it).

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


# ------------------------------------------------------------------------- through the fuse stage (python fuse.py)
DEEP_FEATURES = sorted(p.stem for p in (ROOT / "conf" / "deep_features").glob("*.yaml"))
BLOCK_OPTIONS = sorted(p.stem for p in (ROOT / "conf" / "block").glob("*.yaml"))
DEEP_TABLE = {"embeddings": "deep_penultimate", "crossfit": "deep_crossfit"}


def _stage_tables(manifest: Path, folder: Path) -> dict[str, Path]:
    """Tables as extract writes them: radiomics, embeddings, cross-fitted scores (deep__logit_<class>), ICC."""
    from tests.fuse.test_stage import _tables

    paths = _tables(manifest, folder)
    frame = pd.read_csv(manifest, dtype={"case_id": str})
    y = frame.label.astype(int).to_numpy()
    rng = np.random.default_rng(1)
    logit = 1.5 * (y - 0.5) + rng.normal(size=len(y))
    crossfit = pd.DataFrame({"case_id": frame.case_id, "deep__logit_0": -logit, "deep__logit_1": logit})
    paths["deep_crossfit"] = folder / "deep_crossfit.parquet"
    crossfit.to_parquet(paths["deep_crossfit"], index=False)
    paths["deep_penultimate"] = paths.pop("deep")
    return paths


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    from tests.data.cohort_factory import make_tiny_cohort

    folder = tmp_path_factory.mktemp("fuse_stage")
    manifest = make_tiny_cohort(folder / "cohort", n_patients=30)
    return manifest, _stage_tables(manifest, folder)


def _stage_cfg(manifest: Path, out: Path, paths: dict[str, Path], final: str, deep_features: str, *extra: str):
    overrides = [f"data.manifest={manifest}", f"paths.out={out}", "data.classes=[0,1]", "~data.clinical.t_score",
                 "data.split.n_folds=3", f"final={final}", f"deep_features={deep_features}",
                 f"tables.rad={paths['rad']}", f"tables.deep={paths[DEEP_TABLE[deep_features]]}",
                 f"icc_table={paths['icc']}", "use_classifiers=[lr]", "classifiers.lr.grid.C=[1.0]",
                 "report.enabled=false", "n_jobs=1", *[f"blocks.rad.lasso.{s}" for s in SMALL_LASSO]]
    if deep_features == "embeddings":
        overrides.append("blocks.deep.pca.n_components=3")
    if OmegaConf.load(ROOT / "conf" / "final" / f"{final}.yaml").get("lasso") is not None:
        overrides += [f"final.lasso.{s}" for s in SMALL_LASSO]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("fuse", overrides=[*overrides, *extra])


def _final_steps(model: dict, feature_set: str) -> list[str]:
    """The steps after the blocks of a fitted winner's pipeline (the `final` group's, then the classifier)."""
    return [name for name, _ in model["pipelines"][feature_set].steps]


@pytest.mark.slow  # 4 fuse runs (about 15 s of CPU each); test_stage.py keeps final=scale in the default suite
@pytest.mark.parametrize("deep_features", DEEP_FEATURES)
@pytest.mark.parametrize("final", FINAL_OPTIONS)
def test_every_final_and_deep_features_option_runs_through_the_fuse_stage(tmp_path, stage_inputs, final,
                                                                          deep_features):
    """`python fuse.py final=<option> deep_features=<option>` with the default feature sets (clinical included):
    the stage fits every set, and the fitted pipelines hold the chosen final steps and deep block."""
    import joblib

    from radfuse.stages import fuse

    manifest, paths = stage_inputs
    cfg = _stage_cfg(manifest, tmp_path, paths, final, deep_features)
    result = fuse.run(cfg)
    assert set(result.metrics["feature_sets"]) == {"rad", "deep", "fused", "fused+clinical"}
    model = joblib.load(tmp_path / "fuse" / "default" / "model.joblib")
    wanted = [name for name, step in cfg.final.items() if step is not None]
    for fs in result.metrics["feature_sets"]:
        steps = _final_steps(model, fs)
        assert [s for s in steps if s in cfg.final] == wanted, (fs, steps)
    blocks = model["pipelines"]["deep"].named_steps["blocks"].named_transformers_
    fitted = [name for name, step in blocks["deep"].steps if step != "passthrough"]  # "cached": joblib's marker
    assert fitted == [k for k, v in cfg.blocks.deep.items() if v is not None]


@pytest.mark.slow  # 3 fuse runs
@pytest.mark.parametrize("option", [o for o in BLOCK_OPTIONS if o != "clinical"])
def test_every_block_option_as_a_second_block_runs_through_the_fuse_stage(tmp_path, stage_inputs, option):
    """`+block@blocks.extra=<option> +tables.extra=<table>`: any block option fuses beside the defaults, under
    final=scale (no LASSO after fusion: the issue's crash) and alone."""
    from radfuse.stages import fuse

    manifest, paths = stage_inputs
    table = {"rad": paths["rad"], "deep": paths["deep_penultimate"], "deep_scores": paths["deep_crossfit"]}[option]
    extra = [f"+block@blocks.extra={option}", f"+tables.extra={table}", "~feature_sets",
             "+feature_sets={rad:[rad],extra:[extra],rad_extra:[rad,extra]}"]
    if option == "deep":
        extra.append("blocks.extra.pca.n_components=3")
    if option == "rad":
        extra += [f"blocks.extra.lasso.{s}" for s in SMALL_LASSO]
    result = fuse.run(_stage_cfg(manifest, tmp_path, paths, "scale", "crossfit", *extra))
    assert {"extra", "rad_extra"} <= set(result.metrics["feature_sets"])
    assert 0.0 <= result.metrics["feature_sets"]["extra"]["cv_macro_auc"] <= 1.0


def test_the_clinical_block_option_alone_and_without_its_step(tmp_path, stage_inputs):
    """conf/block/clinical.yaml: a clinical-only feature set runs; with its one step left out the block has nothing
    to fit, and fuse says so."""
    from radfuse.stages import fuse

    manifest, paths = stage_inputs
    only = ["~feature_sets", "+feature_sets={clinical:[clinical]}"]
    result = fuse.run(_stage_cfg(manifest, tmp_path / "a", paths, "scale", "crossfit", *only))
    assert list(result.metrics["feature_sets"]) == ["clinical"]
    with pytest.raises(ValueError, match="clinical"):
        fuse.run(_stage_cfg(manifest, tmp_path / "b", paths, "scale", "crossfit", *only, "blocks.clinical.prep=null"))


def test_the_stage_tests_cover_every_option_of_the_groups():
    """A new option in conf/final, conf/deep_features or conf/block is picked up by the tests above; those the
    tests name by hand are the ones there are."""
    assert set(DEEP_TABLE) == set(DEEP_FEATURES)
    assert set(BLOCK_OPTIONS) == {"rad", "deep", "deep_scores", "clinical"}
    assert set(FINAL_OPTIONS) == {"lasso", "scale"}
