"""Combined model (rad-score(s) + baseline-significant clinical variables) and its nomogram.

The rad-score of a class is the logit of the image model's out-of-fold probability for that class, so the
combined logistic regression is fitted on training predictions the image model did not see. Categorical
clinical variables are dummy-coded against their first level. A nomogram maps each variable to points
(the variable with the widest effect spans 0-100), points add to a total, and the total maps to probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from sklearn.linear_model import LogisticRegression

from radfuse.evaluate.calibration import logit
from radfuse.evaluate.canvas import new_subplots
from radfuse.evaluate.table1 import decimals_of, is_categorical


@dataclass
class CombinedModel:
    """Logistic regression on raw-scale variables: logit p = intercept + sum(coef * design)."""

    variables: list[str]  # original variable names
    levels: dict[str, list[str]]  # categorical variable -> levels (first = reference)
    ranges: dict[str, tuple[float, float]]  # continuous variable -> training min, max
    coef: dict[str, float] = field(default_factory=dict)  # design column -> coefficient
    intercept: float = 0.0

    def design(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = {}
        for var in self.variables:
            if var in self.levels:
                values = frame[var].astype(str)
                for level in self.levels[var][1:]:
                    cols[f"{var}={level}"] = (values == level).astype(float)
            else:
                cols[var] = frame[var].astype(float)
        return pd.DataFrame(cols, index=frame.index)

    def linear_predictor(self, frame: pd.DataFrame) -> np.ndarray:
        d = self.design(frame)
        return self.intercept + d[list(self.coef)].to_numpy() @ np.array(list(self.coef.values()))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-self.linear_predictor(frame)))


def fit_combined(frame: pd.DataFrame, target: np.ndarray, variables: list[str]) -> CombinedModel:
    """Unpenalised logistic regression; fitted on standardised columns for conditioning, reported raw."""
    complete = frame[variables].notna().all(axis=1).to_numpy()
    frame, target = frame.loc[complete, variables], np.asarray(target)[complete]
    levels = {v: sorted(frame[v].astype(str).unique()) for v in variables if is_categorical(frame[v])}
    ranges = {v: (float(frame[v].min()), float(frame[v].max())) for v in variables if v not in levels}
    model = CombinedModel(variables, levels, ranges)
    design = model.design(frame)
    mean, sd = design.mean(), design.std(ddof=0).replace(0, 1)
    fit = LogisticRegression(C=np.inf, max_iter=5000).fit((design - mean) / sd, target)
    raw = fit.coef_[0] / sd.to_numpy()
    model.coef = dict(zip(design.columns, map(float, raw)))
    model.intercept = float(fit.intercept_[0] - np.sum(raw * mean.to_numpy()))
    return model


@dataclass
class Nomogram:
    rows: list[tuple[str, list[tuple[str, float]]]]  # variable label, [(tick label, points)]
    points_per_unit_lp: float  # 100 / widest effect on the linear predictor
    lp_at_zero: float  # linear predictor when every variable sits at its 0-point value
    max_total: float


def nice_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    """Round values (steps of 1, 2, 2.5 or 5 times a power of ten) inside [lo, hi]."""
    values = MaxNLocator(nbins=max(max_ticks - 1, 1), steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    inside = [float(v) for v in values if lo - 1e-9 <= v <= hi + 1e-9]
    return inside or [lo, hi]


def _tick_text(value: float, values: list[float]) -> str:
    d = decimals_of(np.asarray(values), most=3)
    return f"{0.0 if abs(value) < 1e-12 else value:.{d}f}"


def build_nomogram(model: CombinedModel, n_ticks: int = 8, labels: dict[str, str] | None = None) -> Nomogram:
    """Points per variable; continuous scales carry round tick values, fewer on a short scale (a variable with a
    small effect gets a short axis and so room for fewer labels); `labels` renames rows (e.g. 'DTL score')."""
    spans, ticks = {}, {}
    for var in model.variables:
        if var in model.levels:
            effects = [0.0] + [model.coef[f"{var}={lv}"] for lv in model.levels[var][1:]]
            ticks[var] = list(zip(model.levels[var], effects))
        else:
            lo, hi = model.ranges[var]
            ticks[var] = [("", model.coef[var] * lo), ("", model.coef[var] * hi)]  # the scale's two ends
        effects = [e for _, e in ticks[var]]
        spans[var] = (min(effects), max(effects))
    widest = max(hi - lo for lo, hi in spans.values()) or 1.0
    scale = 100.0 / widest
    for var in model.variables:
        if var not in model.levels:
            share = (spans[var][1] - spans[var][0]) * scale / 100
            values = nice_ticks(*model.ranges[var], max(2, int(round(n_ticks * share))))
            ticks[var] += [(_tick_text(v, values), model.coef[var] * v) for v in values]
    names = labels or {}
    rows = [(names.get(var, var), [(label, (e - spans[var][0]) * scale) for label, e in ticks[var]])
            for var in model.variables]
    lp0 = model.intercept + sum(lo for lo, _ in spans.values())
    return Nomogram(rows, scale, lp0, sum((hi - lo) * scale for lo, hi in spans.values()))


def total_points_to_probability(nomo: Nomogram, total: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(nomo.lp_at_zero + np.asarray(total) / nomo.points_per_unit_lp)))


def _drop_overlapping(fig, texts: list) -> None:
    """Hide tick labels whose drawn box overlaps an already kept one (left to right), from the figure's own
    text extents; the row's name is always kept."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    kept = []
    for text in texts:
        box = text.get_window_extent(renderer).expanded(1.08, 1.0)
        if any(box.overlaps(k) for k in kept):
            text.remove()
        else:
            kept.append(box)


def plot_nomogram(nomo: Nomogram, title: str = ""):
    """Points scale, one scale per variable, total points and predicted probability (all on 0-100 width)."""
    n = len(nomo.rows) + 3
    fig, ax = new_subplots(figsize=(9, 0.65 * n + 1))
    total_scale = 100.0 / max(nomo.max_total, 1e-9)
    rows_of_text = []

    def scale_row(y, label, ticks):
        xs = [x for _, x in ticks]
        ax.plot([min(xs), max(xs)], [y, y], color="black", lw=1)
        texts = [ax.text(-4, y, label, ha="right", va="center", fontsize=9)]
        for text, x in sorted(ticks, key=lambda t: t[1]):
            if text:
                ax.plot([x, x], [y, y + 0.12], color="black", lw=1)
                texts.append(ax.text(x, y + 0.18, text, ha="center", va="bottom", fontsize=7))
        rows_of_text.append(texts)

    scale_row(n - 1, "Points", [(f"{p:.0f}", p) for p in np.linspace(0, 100, 11)])
    for i, (label, ticks) in enumerate(nomo.rows):
        scale_row(n - 2 - i, label, ticks)
    totals = nice_ticks(0, nomo.max_total, 8)
    scale_row(1, "Total points", [("", 0.0), ("", 100.0)] + [(_tick_text(t, totals), t * total_scale) for t in totals])
    probs = [p for p in (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)]
    lp = logit(np.array(probs))
    pts = (lp - nomo.lp_at_zero) * nomo.points_per_unit_lp
    inside = [(f"{p:g}", t * total_scale) for p, t in zip(probs, pts) if 0 <= t <= nomo.max_total]
    scale_row(0, "Probability", inside or [("", 0.0)])
    ax.set_xlim(-30, 105)
    ax.set_ylim(-0.6, n)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    for texts in rows_of_text:
        _drop_overlapping(fig, texts)
    return fig


def combined_inputs(rows: pd.DataFrame, manifest: pd.DataFrame, class_name: str, clinical: list[str]) -> pd.DataFrame:
    """Rad-score of one class (logit of its probability) joined with clinical columns by case_id."""
    frame = rows[["case_id", "label", f"prob__{class_name}"]].copy()
    frame["rad_score"] = logit(frame.pop(f"prob__{class_name}").to_numpy())
    clinical_frame = manifest.drop_duplicates("case_id").set_index("case_id")[list(clinical)]
    return frame.join(clinical_frame, on="case_id")
