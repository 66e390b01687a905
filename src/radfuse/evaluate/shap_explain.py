"""SHAP explanations of a fitted sklearn Pipeline on its transformed, named features.

The preceding steps transform the data; the final step is the classifier. Trees and boosting get
TreeExplainer, linear models LinearExplainer (both explain the raw margin / log-odds), everything else a
bounded KernelExplainer on predict_proba with a k-means background. SHAP 0.51 returns multi-class values as
(cases, features, classes) and binary single-output models (LightGBM, XGBoost, LogisticRegression) as
(cases, features); the latter is mirrored into two columns so every result is (cases, features, classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from radfuse.evaluate.canvas import new_figure, new_subplots, pyplot_draws_on

TREE_MODULES = ("sklearn.tree", "sklearn.ensemble._forest", "sklearn.ensemble._gb", "lightgbm", "xgboost",
                "catboost", "sklearn.ensemble._hist_gradient_boosting")


@dataclass
class ShapResult:
    values: np.ndarray  # (cases, features, classes)
    base_values: np.ndarray  # (classes,)
    data: np.ndarray  # transformed feature values (cases, features)
    feature_names: list[str]
    case_ids: list[str]
    classes: list[str]
    explainer: str
    output: str  # what the values add up to: "log-odds / margin" or "probability"

    def table(self) -> pd.DataFrame:
        """Long table: case_id, class, feature, feature_value, shap_value."""
        n, f, k = self.values.shape
        return pd.DataFrame({
            "case_id": np.repeat(self.case_ids, f * k),
            "class": np.tile(self.classes, n * f),
            "feature": np.tile(np.repeat(self.feature_names, k), n),
            "feature_value": np.repeat(self.data.ravel(), k),
            "shap_value": self.values.ravel(),
        })

    def mean_abs(self) -> pd.DataFrame:
        """Mean |SHAP| per feature (rows) and class (columns), most important first."""
        frame = pd.DataFrame(np.abs(self.values).mean(axis=0), index=self.feature_names, columns=self.classes)
        return frame.loc[frame.sum(axis=1).sort_values(ascending=False).index]


class FeatureNamesUnavailable(ValueError):
    """The transformed features of a pipeline have no names: an explanation by position would be unreadable."""


def split_pipeline(pipeline, X: pd.DataFrame):
    """(classifier, transformed X as an array, feature names).

    The names are those the classifier sees: the columns of the transformed frame (pipelines with pandas output),
    else the head's `get_feature_names_out()` (the names it was fitted with; passing X's columns would fail whenever X
    holds a subset or another order of the fitting columns). No name is ever made up: a head that cannot name its
    outputs raises FeatureNamesUnavailable.
    """
    steps = getattr(pipeline, "steps", None)
    classifier = steps[-1][1] if steps else pipeline
    classifier = getattr(classifier, "best_estimator_", classifier)
    if not (steps and len(steps) > 1):
        return classifier, np.asarray(X, dtype=float), [str(c) for c in X.columns]
    head = pipeline[:-1]
    transformed = head.transform(X)
    data = np.asarray(transformed, dtype=float)
    if isinstance(transformed, pd.DataFrame):
        names = [str(c) for c in transformed.columns]
    else:
        try:
            names = [str(n) for n in head.get_feature_names_out()]
        except (AttributeError, ValueError, TypeError) as error:
            raise FeatureNamesUnavailable(
                f"the pipeline's steps before {type(classifier).__name__} do not name their output features "
                f"({error}); SHAP values without feature names would be unreadable. Give every step "
                "get_feature_names_out, or set the pipeline's output to pandas (set_output(transform='pandas'))"
            ) from error
    if len(names) != data.shape[1]:
        raise FeatureNamesUnavailable(f"the pipeline names {len(names)} features but outputs {data.shape[1]}")
    return classifier, data, names


def explainer_kind(classifier) -> str:
    module = type(classifier).__module__
    if any(module.startswith(m) for m in TREE_MODULES):
        return "tree"
    if hasattr(classifier, "coef_") and module.startswith("sklearn.linear_model"):
        return "linear"
    return "kernel"


def _as_3d(values, base, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.stack(values, axis=-1) if isinstance(values, list) else np.asarray(values)
    base = np.atleast_1d(np.asarray(base, dtype=float))
    if values.ndim == 2:  # one log-odds output for the positive class: the negative class is its mirror
        values = np.stack([-values, values], axis=-1)
        base = np.array([-base[0], base[0]])
    if values.shape[-1] != n_classes:
        raise ValueError(f"SHAP returned {values.shape[-1]} outputs for {n_classes} classes")
    return values, base


def explain_pipeline(pipeline, X: pd.DataFrame, classes: list[str], *, background_size: int = 50,
                     max_cases: int = 200, kernel_cases: int = 40, kernel_nsamples: int = 200,
                     seed: int = 0) -> ShapResult:
    """SHAP values of up to `max_cases` rows of X (KernelExplainer: `kernel_cases`, as it is slow)."""
    import shap

    classifier, data, names = split_pipeline(pipeline, X)
    kind = explainer_kind(classifier)
    rng = np.random.default_rng(seed)
    limit = kernel_cases if kind == "kernel" else max_cases
    chosen = np.sort(rng.choice(len(data), size=min(limit, len(data)), replace=False))
    if kind == "tree":
        explainer = shap.TreeExplainer(classifier)
        values, base = explainer.shap_values(data[chosen]), explainer.expected_value
        # sklearn trees average leaf class frequencies (probabilities); boosting libraries add raw margins
        output = "probability" if type(classifier).__module__.startswith("sklearn") else "log-odds / margin"
    elif kind == "linear":
        explainer = shap.LinearExplainer(classifier, shap.maskers.Independent(data, max_samples=200))
        values, base, output = explainer.shap_values(data[chosen]), explainer.expected_value, "log-odds"
    else:
        background = shap.kmeans(data, min(background_size, len(data)))
        # a classifier without probabilities (e.g. LinearSVC) is explained on its decision function
        model_fn = getattr(classifier, "predict_proba", None) or classifier.decision_function
        explainer = shap.KernelExplainer(model_fn, background)
        values = explainer.shap_values(data[chosen], nsamples=kernel_nsamples, silent=True)
        base = explainer.expected_value
        output = "probability" if model_fn.__name__ == "predict_proba" else "decision function"
    values, base = _as_3d(values, base, len(classes))
    case_ids = [str(c) for c in np.asarray(X.index)[chosen]]
    return ShapResult(values, base, data[chosen], names, case_ids, list(classes), kind, output)


def plot_global_bar(result: ShapResult, max_display: int = 15):
    """Mean |SHAP| per feature, stacked by class (Liu 2025, Figure 7A)."""
    top = result.mean_abs().head(max_display).iloc[::-1]
    fig, ax = new_subplots(figsize=(7, 0.35 * len(top) + 1.5))
    left = np.zeros(len(top))
    for c in result.classes:
        ax.barh(top.index, top[c], left=left, label=f"class {c}")
        left += top[c].to_numpy()
    ax.set_xlabel(f"mean |SHAP value| ({result.output})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_beeswarm(result: ShapResult, class_index: int, max_display: int = 15):
    """SHAP beeswarm (summary) plot of one class's output."""
    import shap

    state = np.random.get_state()  # the beeswarm's jitter draws from np.random: seeded here, restored after
    np.random.seed(0)
    try:
        with pyplot_draws_on(new_figure()) as fig:  # shap draws through pyplot
            shap.summary_plot(result.values[:, :, class_index], result.data, feature_names=result.feature_names,
                              max_display=max_display, show=False, rng=np.random.default_rng(0))
    finally:
        np.random.set_state(state)
    fig.suptitle(f"class {result.classes[class_index]}", fontsize=10)
    return fig


def plot_decision(result: ShapResult, class_index: int, case_indices: list[int], show_case_ids: bool = False):
    """SHAP decision plot of chosen cases for one class's output (legend: case ids only when asked for)."""
    import shap

    idx = np.asarray(case_indices, dtype=int)
    names = [result.case_ids[i] if show_case_ids else f"case {n + 1}" for n, i in enumerate(idx)]
    with pyplot_draws_on(new_figure()) as fig:  # shap draws through pyplot
        shap.decision_plot(float(result.base_values[class_index]), result.values[idx, :, class_index],
                           features=result.data[idx], feature_names=result.feature_names, show=False,
                           legend_labels=names, legend_location="lower right")
    fig.suptitle(f"class {result.classes[class_index]}", fontsize=10)
    return fig


def decision_cases(result: ShapResult, labels: dict[str, str], per_class: int = 3) -> dict[int, list[int]]:
    """For each class, up to `per_class` explained cases whose true label is that class."""
    chosen = {}
    for k, c in enumerate(result.classes):
        idx = [i for i, cid in enumerate(result.case_ids) if labels.get(cid) == c]
        chosen[k] = idx[:per_class] or list(range(min(per_class, len(result.case_ids))))
    return chosen
