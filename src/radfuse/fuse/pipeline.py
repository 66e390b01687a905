"""Build the fusion Pipeline: per-block preprocessing -> early fusion -> scale -> LASSO -> classifier.

Everything that learns from data is a step of ONE Pipeline, so cross-validation refits all of it on the
training folds only. Block steps select their columns by prefix (`<block>__`); a block with a ComBat step also
receives the site/covariate columns ComBat consumes.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping

from sklearn import config_context
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from radfuse.fuse.combat import ComBat

Steps = Mapping[str, Any]  # step name -> estimator, or None to leave the step out


def steps_pipeline(steps: Steps, memory: Any = None) -> Pipeline:
    """Pipeline of the non-None steps, in the given order (clones, so one config serves many pipelines).

    With a `memory`, a final "passthrough" step makes every real step cacheable (a Pipeline never caches its
    last step), so a block fitted on the same fold is reused across classifiers and feature sets."""
    kept = [(name, clone(est)) for name, est in steps.items() if est is not None]
    if not kept:
        raise ValueError("a block needs at least one step")
    return Pipeline(kept + ([("cached", "passthrough")] if memory is not None else []), memory=memory)


def block_columns(block: str, pipeline: Pipeline) -> make_column_selector:
    """The block's own columns, plus the site/covariate columns its ComBat step (if any) consumes."""
    extra = [c for _, step in pipeline.steps if isinstance(step, ComBat)
             for c in (step.site_column, *step.covariates)]
    alternatives = [f"{re.escape(block)}__.*"] + [f"{re.escape(c)}$" for c in extra]
    return make_column_selector(pattern=f"^(?:{'|'.join(alternatives)})")


def fusion_pipeline(blocks: Mapping[str, Steps], final: Steps, classifier: BaseEstimator,
                    memory: Any = None) -> Pipeline:
    """blocks (name -> steps, in feature-set order) fused by concatenation, then `final` steps and `classifier`."""
    transformers = []
    for name, steps in blocks.items():
        if all(step is None for step in steps.values()):
            raise ValueError(f"block {name!r} has every step set to null: keep one step (e.g. its scale), or leave the "
                             f"block out of every feature set (feature_sets)")
        pipe = steps_pipeline(steps, memory)
        transformers.append((name, pipe, block_columns(name, pipe)))
    fused = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    final_steps = [(n, clone(e)) for n, e in final.items() if e is not None]
    pipeline = Pipeline([("blocks", fused), *final_steps, ("classifier", clone(classifier))], memory=memory)
    pipeline.set_output(transform="pandas")
    return request_groups(pipeline)


def request_groups(estimator: BaseEstimator) -> BaseEstimator:
    """Ask every step whose `fit` takes `groups` (LassoSelector, or one of your own) for the patient ids (metadata
    routing), so its inner CV is grouped. Routers such as RFECV ask for them through their group splitter."""
    with config_context(enable_metadata_routing=True):
        for value in [estimator, *estimator.get_params(deep=True).values()]:
            if takes_groups(value):
                value.set_fit_request(groups=True)
    return estimator


def takes_groups(value: Any) -> bool:
    """An estimator instance whose own `fit` has a `groups` parameter and a metadata request for it."""
    if not isinstance(value, BaseEstimator) or not hasattr(type(value), "set_fit_request"):
        return False
    return "groups" in inspect.signature(type(value).fit).parameters


def clinical_preprocessor() -> ColumnTransformer:
    """Clinical block: numeric -> median impute + scale; categorical -> most-frequent impute + one-hot."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    return ColumnTransformer(
        [("numeric", numeric, make_column_selector(dtype_include="number")),
         ("categorical", categorical, make_column_selector(dtype_exclude="number"))],
        verbose_feature_names_out=False)
