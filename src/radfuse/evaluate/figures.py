"""Matplotlib figures of the report. Each function returns a Figure on an Agg canvas, drawn through the object API
(`radfuse.evaluate.canvas`): no backend switch, nothing registered with pyplot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import auc, roc_curve

from radfuse.evaluate import bootstrap
from radfuse.evaluate.calibration import reliability_curve
from radfuse.evaluate.canvas import new_subplots


def _roc_band(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sensitivity on `grid` (1 - specificity) for every bootstrap resample (rows of case counts): the weighted
    ROC of each resample, its points at the distinct scores (ties pooled, as roc_curve does), interpolated."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    ranked, pos = np.asarray(scores, dtype=float)[order], np.asarray(truth, dtype=bool)[order]
    w = np.atleast_2d(weights)[:, order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last case of each distinct score
    tps, fps = np.cumsum(w * pos, axis=1)[:, ends], np.cumsum(w * ~pos, axis=1)[:, ends]
    out = np.full((len(w), len(grid)), np.nan)
    for b in range(len(w)):
        if tps[b, -1] > 0 and fps[b, -1] > 0:
            out[b] = np.interp(grid, np.r_[0.0, fps[b] / fps[b, -1]], np.r_[0.0, tps[b] / tps[b, -1]])
    return out


def _auc_label(name: str, estimate: float, boot: np.ndarray) -> str:
    low, high = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return f"{name}: AUC {estimate:.3f} (95% CI {low:.3f}-{high:.3f})"


def roc_figure(labels, probs: np.ndarray, classes: list[str], title: str, *, groups=None, n_resamples: int = 200,
               seed: int = 0):
    """One-vs-rest ROC per class with its 95% bootstrap band, plus micro and macro (interpolated mean) averages.

    Every legend entry holds the AUC with its patient-level bootstrap percentile CI; the resamples are those of
    the report's tables (same seed, same patient draws), so the legend and the tables agree.
    """
    labels = np.asarray(labels).astype(str)
    probs = np.asarray(probs, dtype=float)
    truth = labels[:, None] == np.asarray(classes)[None, :]
    weights = bootstrap.resample_weights(len(labels), n_resamples, np.random.default_rng(seed), groups)
    fig, ax = new_subplots(figsize=(5.5, 5.5))
    grid, tprs, aucs, boot_aucs = np.linspace(0, 1, 201), [], [], []
    for k, c in enumerate(classes):
        if truth[:, k].all() or not truth[:, k].any():
            continue
        fpr, tpr, _ = roc_curve(truth[:, k], probs[:, k])
        tprs.append(np.interp(grid, fpr, tpr))
        aucs.append(auc(fpr, tpr))
        boot_aucs.append(bootstrap.weighted_auc(truth[:, k], probs[:, k], weights))
        line, = ax.plot(fpr, tpr, lw=1.5, label=_auc_label(f"class {c}", aucs[-1], boot_aucs[-1]))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(_roc_band(truth[:, k], probs[:, k], weights, grid), [2.5, 97.5], axis=0)
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.15, lw=0)
    if len(classes) > 2 and tprs:
        fpr, tpr, _ = roc_curve(truth.ravel(), probs.ravel())
        micro = bootstrap.weighted_auc(truth.ravel(), probs.ravel(), np.repeat(weights, len(classes), axis=1))
        ax.plot(fpr, tpr, ls=":", color="black", label=_auc_label("micro-average", auc(fpr, tpr), micro))
        # the curve is the vertical mean of the class curves; the label quotes the mean of the class AUCs,
        # the macro AUC of the tables (the two differ slightly through interpolation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            macro = np.nanmean(np.vstack(boot_aucs), axis=0)
        ax.plot(grid, np.mean(tprs, axis=0), ls="--", color="grey",
                label=_auc_label("macro-average", float(np.mean(aucs)), macro))
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=7, title=f"shaded: 95% bootstrap band ({n_resamples} resamples)",
              title_fontsize=7)
    fig.tight_layout()
    return fig


def decision_curve_figure(curves: dict[str, pd.DataFrame], class_name: str, title: str):
    """Net benefit of each model against threshold, with treat-all and treat-none."""
    fig, ax = new_subplots(figsize=(5.5, 4))
    any_curve = None
    for model, frame in curves.items():
        frame = frame[frame["class"] == class_name]
        ax.plot(frame["threshold"], frame["net_benefit"], lw=1.5, label=model)
        any_curve = frame
    if any_curve is not None:
        ax.plot(any_curve["threshold"], any_curve["treat_all"], color="grey", lw=1, label="treat all")
        ax.axhline(0, color="black", lw=1, label="treat none")
        top = max(any_curve["treat_all"].max(), max(f["net_benefit"].max() for f in curves.values()), 0.05)
        ax.set_ylim(-0.05, top * 1.1)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title=title, xlim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def calibration_figure(labels, probs: np.ndarray, classes: list[str], title: str, n_bins: int | None = None):
    """Reliability curve per class (quantile bins; by default about 10 cases per bin, 3 to 10 bins)."""
    labels = np.asarray(labels).astype(str)
    n_bins = n_bins or int(np.clip(len(labels) // 10, 3, 10))
    fig, ax = new_subplots(figsize=(5, 5))
    targets = classes[-1:] if len(classes) == 2 else classes
    for c in targets:
        k = classes.index(c)
        curve = reliability_curve(labels == c, probs[:, k], n_bins=n_bins)
        ax.plot(curve["mean_predicted"], curve["observed"], marker="o", ms=3, label=f"class {c}")
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=1, ls="--")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, classes: list[str], title: str):
    matrix = np.asarray(matrix)
    fig, ax = new_subplots(figsize=(0.8 * len(classes) + 2, 0.8 * len(classes) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def interval_figure(frame: pd.DataFrame, label: str, value: str, low: str, high: str, xlabel: str, title: str,
                    reference: float | None = None, annotations: list[str] | None = None):
    """Forest plot: one row per entry with its estimate and CI (classifier comparison, DeLong differences);
    `annotations` are printed at the right of each row (e.g. adjusted p-values)."""
    frame = frame.reset_index(drop=True)
    fig, ax = new_subplots(figsize=(8, 0.4 * len(frame) + 1.6))
    y = np.arange(len(frame))[::-1]
    err = np.vstack([frame[value] - frame[low], frame[high] - frame[value]]).clip(min=0)
    ax.errorbar(frame[value], y, xerr=err, fmt="o", color="tab:blue", capsize=3)
    if reference is not None:
        ax.axvline(reference, color="grey", lw=1, ls="--")
    ax.set_yticks(y, frame[label], fontsize=9)
    ax.set_ylim(-0.7, len(frame) - 0.3)
    if annotations:
        for yi, text in zip(y, annotations):
            ax.annotate(text, (1.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.set(xlabel=xlabel, title=title)
    fig.tight_layout()
    return fig


def lasso_path_figure(path: pd.DataFrame, chosen_lambda: float | None, title: str = "LASSO path", top: int = 8):
    """Coefficient paths against log10(lambda) (index = lambda, one column per feature); the chosen lambda is
    marked and printed with 3 significant digits, and the legend names the `top` features by |coefficient| at
    the chosen lambda (else at the smallest lambda); the other paths are drawn thin and grey."""
    lambdas = path.index.to_numpy(dtype=float)
    at = int(np.argmin(np.abs(np.log(lambdas) - np.log(chosen_lambda)))) if chosen_lambda else int(np.argmin(lambdas))
    ranked = path.iloc[at].abs().sort_values(ascending=False, kind="stable")
    named = [c for c in ranked.index[:top] if ranked[c] > 0]
    fig, ax = new_subplots(figsize=(7.5, 4.5))
    handles = []
    if chosen_lambda:
        handles.append(ax.axvline(np.log10(chosen_lambda), color="black", ls="--", lw=1,
                                  label=f"chosen lambda = {chosen_lambda:.3g}"))
    for column in path.columns:
        if column not in named:
            ax.plot(np.log10(lambdas), path[column], lw=0.6, color="lightgrey")
    for column in named:
        handles += ax.plot(np.log10(lambdas), path[column], lw=1.4, label=str(column))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  title=f"top {len(named)} of {path.shape[1]} by |coef|", title_fontsize=7)
    ax.set(xlabel="log10(lambda)", ylabel="coefficient", title=title)
    fig.tight_layout()
    return fig


def coefficient_figure(coefs: pd.Series, title: str = "selected features"):
    coefs = coefs[coefs != 0].sort_values()
    fig, ax = new_subplots(figsize=(6, 0.3 * len(coefs) + 1.5))
    ax.barh([str(i) for i in coefs.index], coefs.to_numpy(), color=np.where(coefs > 0, "tab:red", "tab:blue"))
    ax.set(xlabel="coefficient", title=title)
    fig.tight_layout()
    return fig
