"""Report sections about discrimination: classifier comparison, the performance table, ROC, confusion matrices,
DeLong comparisons."""

from __future__ import annotations

import pandas as pd

from radfuse.artifacts import CV_RESULTS_FILE
from radfuse.evaluate import figures, intervals, metrics
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.html import Section, figure_row


def fmt_ci(entry: dict, kind: str = "ci_percentile", clustered: bool = False) -> str:
    """An estimate with the interval a reader can trust: Wilson for proportions (the bootstrap when patients
    hold several ROIs), none below the minimum n of `intervals.RULE`."""
    if "n_smaller_group" in entry:
        return intervals.format_estimate(entry.get("estimate"), entry.get(kind), entry["n_smaller_group"],
                                         minimum=intervals.MIN_GROUP_FOR_AUC_CI, unit=" per group")
    if "ci_wilson" in entry:
        ci = entry.get(kind) if clustered else entry["ci_wilson"]
        return intervals.format_estimate(entry.get("estimate"), ci, entry.get("n"))
    return intervals.format_estimate(entry.get("estimate"), entry.get(kind), entry.get("n"))


def classifier_comparison(ctx: ReportContext) -> Section:
    section = Section("classifiers", "Classifier comparison and model selection")
    section.text(f"Selection rule: {ctx.selection_rule}")
    winners = set(ctx.selected)
    given = ctx.extras.get("selection") or {}
    rows = []
    for label, result in ctx.model_metrics.items():
        cv = result["sets"].get(metrics.OOF_SET)
        if not cv:
            continue
        key = tuple(label.split("/", 1))
        auc = cv["overall"]["macro_auc"]
        rows.append({"feature set": key[0], "model": label, "winner": "yes" if key in winners else "",
                     "cv_macro_auc": auc["estimate"], "low": auc["ci_percentile"][0], "high": auc["ci_percentile"][1],
                     "selection": ctx.selection_score(key), "cv_accuracy": cv["overall"]["accuracy"]["estimate"]})
    if not rows:
        section.unavailable("no out-of-fold ('oof') predictions in the table")
        return section
    order = {fs: i for i, fs in enumerate(dict.fromkeys(r["feature set"] for r in rows))}
    frame = pd.DataFrame(rows).sort_values(["feature set", "selection"], key=lambda c: c.map(order)
                                           if c.name == "feature set" else -c).reset_index(drop=True)
    shown = pd.DataFrame({
        "feature set": frame["feature set"], "model": frame["model"], "winner": frame["winner"],
        **({"CV macro AUC, mean of folds (selection)": frame["selection"].map("{:.3f}".format)} if given else {}),
        "pooled out-of-fold macro AUC (95% CI)": [fmt_ci({"estimate": r.cv_macro_auc, "ci_percentile": [r.low, r.high]})
                                                  for r in frame.itertuples()],
        "out-of-fold accuracy": frame["cv_accuracy"].map("{:.3f}".format)})
    section.text("Out-of-fold predictions on the training cohort; pooled AUC CIs from the patient-level bootstrap.")
    section.table(shown)
    tuned = winner_hyperparameters(ctx.extras.get("cv_results"), winners)
    if tuned is not None:
        section.table(tuned, f"tuned hyperparameters of each winner (the whole grid is in {CV_RESULTS_FILE})")
    fig = figures.interval_figure(frame.dropna(subset=["low"]), "model", "cv_macro_auc", "low", "high",
                                  "pooled out-of-fold macro AUC", "classifier comparison", reference=0.5)
    section.blocks.append(figure_row([ctx.figures.embed(fig, "classifier_comparison")]))
    ctx.out["classifier_comparison"] = frame.to_dict(orient="records")
    return section


def winner_hyperparameters(cv_results, winners: set[tuple[str, str]]) -> pd.DataFrame | None:
    """One row per winner: its grid search's best candidate (rank 1), parameters as `name = value`."""
    if not isinstance(cv_results, pd.DataFrame) or not {"feature_set", "classifier", "rank_test_score"} <= set(
            cv_results.columns):
        return None
    rows = []
    for fs, clf in sorted(winners):
        best = cv_results[(cv_results["feature_set"] == fs) & (cv_results["classifier"] == clf)]
        best = best[best["rank_test_score"] == best["rank_test_score"].min()].head(1)
        if best.empty:
            continue
        params = {c.removeprefix("param_").removeprefix("classifier__"): best.iloc[0][c]
                  for c in best.columns if c.startswith("param_") and pd.notna(best.iloc[0][c])}
        rows.append({"winner": f"{fs}/{clf}", "hyperparameters": ", ".join(f"{k} = {_plain(v)}"
                                                                         for k, v in sorted(params.items()))
                     or "(no grid: defaults)"})
    return pd.DataFrame(rows) if rows else None


def _plain(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def performance_table(ctx: ReportContext) -> Section:
    """Liu 2025 Table 3 layout: per class and macro rows, accuracy and AUC (95% CI) per cohort."""
    section = Section("performance", "Performance per cohort (accuracy, AUC with 95% CI)")
    section.text("Per-class rows are one-vs-rest at the Youden cut-off chosen on the out-of-fold training "
                 "predictions and applied unchanged to every cohort; the overall row holds multi-class accuracy "
                 "and macro-average AUC. CIs: Wilson score intervals for proportions (accuracy, sensitivity, "
                 "specificity, PPV, NPV; the patient-level bootstrap where patients hold several ROIs); patient-"
                 f"level bootstrap percentile intervals ({ctx.n_resamples} resamples) for AUC, F1 and balanced "
                 f"accuracy; BCa and DeLong intervals are in metrics.json. {intervals.RULE}")
    for key in ctx.selected:
        result = ctx.model_metrics[model_label(key)]
        sets = list(result["sets"])
        rows = []
        for c in ctx.classes + ["overall"]:
            row = {"row": f"class {c}" if c != "overall" else "macro / overall"}
            for s in sets:
                scope = result["sets"][s]["overall"] if c == "overall" else result["sets"][s]["per_class"][c]
                clustered = result["sets"][s]["n_patients"] < result["sets"][s]["n_cases"]
                row[f"{s} accuracy"] = fmt_ci(scope["accuracy"], clustered=clustered)
                row[f"{s} AUC"] = fmt_ci(scope["macro_auc" if c == "overall" else "auc"])
            rows.append(row)
        section.table(pd.DataFrame(rows), f"{model_label(key)} (cut-offs from {result['threshold_source']}: "
                      + ", ".join(f"{c}: {t:.3f}" for c, t in result["thresholds"].items()) + ")")
        section.table(_detail_table(ctx, result), f"{model_label(key)}: all operating-point metrics")
    return section


def _detail_table(ctx: ReportContext, result: dict) -> pd.DataFrame:
    rows = []
    for s, values in result["sets"].items():
        clustered = values["n_patients"] < values["n_cases"]
        for c in ctx.classes:
            m = values["per_class"][c]
            rows.append({"set": s, "class": c, "n": values["class_counts"][c],
                         **{name: fmt_ci(m[name], clustered=clustered) for name in metrics.BINARY_METRICS}})
        o = values["overall"]
        rows.append({"set": s, "class": "overall", "n": values["n_cases"],
                     **{name: fmt_ci(o[name], clustered=clustered) for name in metrics.OVERALL_METRICS}})
    return pd.DataFrame(rows)


def roc_section(ctx: ReportContext) -> Section:
    section = Section("roc", "ROC curves (one-vs-rest per class, micro and macro average)")
    section.text(f"Shaded bands and the intervals in every legend entry: 95% patient-level bootstrap percentile "
                 f"intervals ({ctx.n_resamples} resamples, seed {ctx.seed}), the resamples of the tables.")
    for key in ctx.selected:
        tags = []
        for name, frame in ctx.sets(key).items():
            a = ctx.arrays(frame)
            fig = figures.roc_figure(a.labels, a.probs, ctx.classes, f"{model_label(key)} - {name}", groups=a.groups,
                                     n_resamples=ctx.n_resamples, seed=ctx.seed)
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
