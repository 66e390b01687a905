"""Report sections about discrimination: classifier comparison, the performance table, ROC, confusion matrices,
DeLong comparisons."""

from __future__ import annotations

import pandas as pd

from radfuse.evaluate import figures, metrics
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.html import Section, figure_row


def fmt_ci(entry: dict, kind: str = "ci_percentile") -> str:
    est, ci = entry.get("estimate"), entry.get(kind) or [None, None]
    if est is None:
        return "n/a"
    if ci[0] is None:
        return f"{est:.3f}"
    return f"{est:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def classifier_comparison(ctx: ReportContext) -> Section:
    section = Section("classifiers", "Classifier comparison (cross-validated AUC with 95% CI)")
    rows = []
    for label, result in ctx.model_metrics.items():
        cv = result["sets"].get(metrics.OOF_SET)
        if cv:
            auc = cv["overall"]["macro_auc"]
            rows.append({"model": label, "cv_macro_auc": auc["estimate"], "low": auc["ci_percentile"][0],
                         "high": auc["ci_percentile"][1], "cv_accuracy": cv["overall"]["accuracy"]["estimate"]})
    cv_results = ctx.extras.get("cv_results")
    if isinstance(cv_results, pd.DataFrame) and len(cv_results):
        section.table(cv_results, "cross-validation results reported by the fitting stage")
        ctx.out["cv_results"] = cv_results.to_dict(orient="records")
    if not rows:
        section.unavailable("no out-of-fold ('oof') predictions in the table")
        return section
    frame = pd.DataFrame(rows).sort_values("cv_macro_auc", ascending=False)
    section.text("Out-of-fold predictions on the training cohort; 95% CI from the patient-level bootstrap. "
                 "The best model of each feature set (marked in later sections) is chosen on this table only.")
    section.table(frame)
    fig = figures.interval_figure(frame.dropna(subset=["low"]), "model", "cv_macro_auc", "low", "high",
                                  "cross-validated macro AUC", "classifier comparison", reference=0.5)
    section.blocks.append(figure_row([ctx.figures.embed(fig, "classifier_comparison")]))
    ctx.out["classifier_comparison"] = frame.to_dict(orient="records")
    return section


def performance_table(ctx: ReportContext) -> Section:
    """Liu 2025 Table 3 layout: per class and macro rows, accuracy and AUC (95% CI) per cohort."""
    section = Section("performance", "Performance per cohort (accuracy, AUC with 95% CI)")
    section.text("Per-class rows are one-vs-rest at the Youden cut-off chosen on the out-of-fold training "
                 "predictions and applied unchanged to every cohort; the overall row holds multi-class accuracy "
                 "and macro-average AUC. CIs: patient-level bootstrap percentile intervals "
                 f"({ctx.n_resamples} resamples); BCa and DeLong intervals are in metrics.json.")
    for key in ctx.selected:
        result = ctx.model_metrics[model_label(key)]
        sets = list(result["sets"])
        rows = []
        for c in ctx.classes + ["overall"]:
            row = {"row": f"class {c}" if c != "overall" else "macro / overall"}
            for s in sets:
                scope = result["sets"][s]["overall"] if c == "overall" else result["sets"][s]["per_class"][c]
                row[f"{s} accuracy"] = fmt_ci(scope["accuracy"])
                row[f"{s} AUC"] = fmt_ci(scope["macro_auc" if c == "overall" else "auc"])
            rows.append(row)
        section.table(pd.DataFrame(rows), f"{model_label(key)} (cut-offs from {result['threshold_source']}: "
                      + ", ".join(f"{c}: {t:.3f}" for c, t in result["thresholds"].items()) + ")")
        section.table(_detail_table(ctx, result), f"{model_label(key)}: all operating-point metrics")
    return section


def _detail_table(ctx: ReportContext, result: dict) -> pd.DataFrame:
    rows = []
    for s, values in result["sets"].items():
        for c in ctx.classes:
            m = values["per_class"][c]
            rows.append({"set": s, "class": c, "n": values["class_counts"][c],
                         **{name: fmt_ci(m[name]) for name in metrics.BINARY_METRICS}})
        o = values["overall"]
        rows.append({"set": s, "class": "overall", "n": values["n_cases"],
                     **{name: fmt_ci(o[name]) for name in metrics.OVERALL_METRICS}})
    return pd.DataFrame(rows)


def roc_section(ctx: ReportContext) -> Section:
    section = Section("roc", "ROC curves (one-vs-rest per class, micro and macro average)")
    for key in ctx.selected:
        tags = []
        for name, frame in ctx.sets(key).items():
            a = ctx.arrays(frame)
            fig = figures.roc_figure(a.labels, a.probs, ctx.classes, f"{model_label(key)} - {name}")
            tags.append(ctx.figures.embed(fig, f"roc_{model_label(key)}_{name}"))
        section.blocks.append(f"<h3>{model_label(key)}</h3>" + figure_row(tags))
    return section


def confusion_section(ctx: ReportContext) -> Section:
    section = Section("confusion", "Confusion matrices (predicted class = the classifier's prediction)")
    for key in ctx.selected:
        tags = [ctx.figures.embed(figures.confusion_figure(v["confusion_matrix"], ctx.classes,
                                                           f"{model_label(key)} - {s}"),
                                  f"confusion_{model_label(key)}_{s}")
                for s, v in ctx.model_metrics[model_label(key)]["sets"].items()]
        section.blocks.append(f"<h3>{model_label(key)}</h3>" + figure_row(tags))
    return section
