"""Decision curves (held-out cohorts only) and calibration, optionally after recalibration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radfuse.evaluate import calibration, dca, figures, metrics
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.html import Section, figure_row


def decision_curve_section(ctx: ReportContext) -> Section:
    section = Section("dca", "Decision-curve analysis (held-out cohorts)")
    targets = ctx.classes[-1:] if len(ctx.classes) == 2 else ctx.classes
    held_out = {}
    for key in ctx.selected:
        for name, frame in metrics.held_out_sets(ctx.sets(key)).items():
            a = ctx.arrays(frame)
            held_out.setdefault(name, {})[model_label(key)] = dca.decision_curves(a.labels, a.probs, ctx.classes)
    if not held_out:
        section.unavailable("no held-out cohort (internal / external / prospective) in the predictions; decision "
                            "curves on training data would be optimistic")
        return section
    section.text("Net benefit = TP/n - FP/n x pt/(1-pt) for one-vs-rest decisions at threshold pt "
                 "(positive class for binary tasks).")
    ctx.out["decision_curves"] = {name: {m: c.to_dict(orient="list") for m, c in curves.items()}
                                  for name, curves in held_out.items()}
    for name, curves in held_out.items():
        tags = [ctx.figures.embed(figures.decision_curve_figure(curves, c, f"{name} - class {c}"), f"dca_{name}_{c}")
                for c in targets]
        section.blocks.append(f"<h3>{name}</h3>" + figure_row(tags))
    return section


def _recalibrated_sets(ctx: ReportContext, key, method: str) -> dict[str, np.ndarray]:
    """Recalibrator fitted on out-of-fold training predictions: cross-fitted on training, applied elsewhere."""
    sets = ctx.sets(key)
    train = ctx.arrays(sets[metrics.OOF_SET])
    truth = train.onehot(ctx.classes)
    fitted = calibration.Recalibrator(method).fit(truth, train.probs)
    out = {metrics.OOF_SET: calibration.crossfit_recalibrate(truth, train.probs, train.groups, method)}
    for name, frame in sets.items():
        if name not in (metrics.OOF_SET, "train"):
            out[name] = fitted.transform(ctx.arrays(frame).probs)
    return out


def calibration_section(ctx: ReportContext) -> Section:
    section = Section("calibration", "Calibration")
    method = (ctx.extras.get("config") or {}).get("recalibration") or ctx.extras.get("recalibration")
    section.text("Reliability curves (quantile bins), Brier score, calibration intercept (calibration-in-the-"
                 "large, slope fixed at 1) and slope (logistic regression on logit p); perfect calibration: "
                 "intercept 0, slope 1.")
    summary, rows = {}, []
    for key in ctx.selected:
        label, tags = model_label(key), []
        sets = ctx.sets(key)
        recal = _recalibrated_sets(ctx, key, method) if method and metrics.OOF_SET in sets else {}
        for name, frame in sets.items():
            if name == "train":
                continue  # apparent calibration of the refit model on its own data says little
            a = ctx.arrays(frame)
            variants = {"": a.probs, f" ({method})": recal.get(name)} if method else {"": a.probs}
            for suffix, probs in variants.items():
                if probs is None:
                    continue
                stats = calibration.calibration_summary(a.labels, probs, ctx.classes)
                summary.setdefault(label, {})[name + suffix] = stats
                rows += [{"model": label, "set": name + suffix, "class": c, **v}
                         for c, v in stats["per_class"].items()]
                rows.append({"model": label, "set": name + suffix, "class": "multi-class",
                             "brier": stats["multiclass_brier"]})
                tags.append(ctx.figures.embed(figures.calibration_figure(a.labels, probs, ctx.classes,
                                                                         f"{label} - {name}{suffix}"),
                                              f"calibration_{label}_{name}{suffix}"))
        section.blocks.append(f"<h3>{label}</h3>" + figure_row(tags))
    if method:
        section.text(f"Recalibration '{method}' fitted on out-of-fold training predictions (cross-fitted within "
                     "the training cohort) and applied unchanged to held-out cohorts.")
    section.table(pd.DataFrame(rows))
    ctx.out["calibration"] = summary
    return section
