"""DeLong comparisons: paired (two models, same cases) per set, unpaired (one model, two cohorts)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from radfuse.artifacts import DELONG_TABLE, write_csv
from radfuse.evaluate import delong, figures, metrics
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.html import Section, figure_row, format_p


def _tests(a1: metrics.CaseArrays, a2: metrics.CaseArrays, classes: list[str], paired: bool) -> list[dict]:
    """Per class and macro DeLong tests; a class with < 2 cases on either side is reported as skipped."""
    rows = []
    truth1, truth2 = a1.onehot(classes), a2.onehot(classes)
    for k, c in enumerate(classes + ["macro"]):
        try:
            if c == "macro" and paired:
                r = delong.paired_macro_test(a1.labels, a1.probs, a2.probs, classes, groups=a1.groups)
            elif c == "macro":
                r = delong.unpaired_macro_test(a1.labels, a1.probs, a2.labels, a2.probs, classes,
                                               groups1=a1.groups, groups2=a2.groups)
            elif paired:
                r = delong.paired_test(truth1[:, k], a1.probs[:, k], a2.probs[:, k], groups=a1.groups)
            else:
                r = delong.unpaired_test(truth1[:, k], a1.probs[:, k], truth2[:, k], a2.probs[:, k],
                                         groups1=a1.groups, groups2=a2.groups)
            rows.append({"class": c, **r.as_dict()})
        except ValueError as err:
            rows.append({"class": c, "note": str(err)})
    return rows


def paired_comparisons(ctx: ReportContext) -> list[dict]:
    rows = []
    for key1, key2 in itertools.combinations(ctx.selected, 2):
        sets1, sets2 = ctx.sets(key1), ctx.sets(key2)
        for name in sorted(sets1.keys() & sets2.keys()):  # sorted: a set's order changes with PYTHONHASHSEED
            merged = sets1[name].merge(sets2[name], on="case_id", suffixes=("", "__2"))
            if len(merged) < 4:
                continue
            second = merged[[c for c in merged if c.endswith("__2")]].rename(columns=lambda c: c[:-3])
            second[["case_id", "patient_id", "label"]] = merged[["case_id", "patient_id", "label"]]
            for row in _tests(ctx.arrays(merged), ctx.arrays(second), ctx.classes, paired=True):
                rows.append({"type": "paired", "model1": model_label(key1), "model2": model_label(key2),
                             "set1": name, "set2": name, "n": len(merged), **row})
    return rows


def unpaired_comparisons(ctx: ReportContext) -> list[dict]:
    """Each selected model: cross-validated training AUC against every held-out cohort."""
    rows = []
    for key in ctx.selected:
        sets = ctx.sets(key)
        if metrics.OOF_SET not in sets:
            continue
        for name, frame in metrics.held_out_sets(sets).items():
            for row in _tests(ctx.arrays(sets[metrics.OOF_SET]), ctx.arrays(frame), ctx.classes, paired=False):
                rows.append({"type": "unpaired", "model1": model_label(key), "model2": model_label(key),
                             "set1": metrics.OOF_SET, "set2": name, "n": len(frame), **row})
    return rows


SUMMARY_COLUMNS = ("model1", "model2", "set1", "n", "auc1", "auc2", "difference", "ci_low", "ci_high", "p_value")


def held_out_summary(ctx: ReportContext, frame: pd.DataFrame) -> pd.DataFrame:
    """The comparisons a reader needs: each fused feature set's model against each single block's, macro AUC, on
    each held-out cohort (paired DeLong); fused model first, Holm-adjusted over the whole summary."""
    if "difference" not in frame:
        return pd.DataFrame()
    rows = frame[(frame["type"] == "paired") & (frame["class"] == "macro") & frame["difference"].notna()
                 & ~frame["set1"].isin([metrics.OOF_SET, "train"])]
    out = []
    for _, row in rows.iterrows():
        fs1, fs2 = row["model1"].split("/", 1)[0], row["model2"].split("/", 1)[0]
        if ctx.is_fused(fs1) and not ctx.is_fused(fs2):
            out.append(row[list(SUMMARY_COLUMNS)].to_dict())
        elif ctx.is_fused(fs2) and not ctx.is_fused(fs1):  # orient: fused model first
            out.append({"model1": row["model2"], "model2": row["model1"], "set1": row["set1"], "n": row["n"],
                        "auc1": row["auc2"], "auc2": row["auc1"], "difference": -row["difference"],
                        "ci_low": -row["ci_high"], "ci_high": -row["ci_low"], "p_value": row["p_value"]})
    summary = pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))
    if summary.empty:
        return summary
    summary = summary.rename(columns={"set1": "cohort"})
    summary["p_holm"] = delong.holm(summary["p_value"].to_numpy())
    order = summary["cohort"].map(lambda c: metrics.COHORTS.index(c) if c in metrics.COHORTS else len(metrics.COHORTS))
    return summary.assign(_o=order).sort_values(["_o", "cohort", "model1", "model2"]).drop(columns="_o") \
        .reset_index(drop=True)


def _summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "cohort": summary["cohort"], "fused model": summary["model1"], "single-block model": summary["model2"],
        "n": summary["n"], "fused macro AUC": summary["auc1"].map("{:.3f}".format),
        "single macro AUC": summary["auc2"].map("{:.3f}".format),
        "difference (95% CI)": [f"{d:+.3f} ({lo:+.3f} to {hi:+.3f})" for d, lo, hi in
                                zip(summary["difference"], summary["ci_low"], summary["ci_high"])],
        "p": summary["p_value"].map(format_p), "p (Holm)": summary["p_holm"].map(format_p)})


def delong_section(ctx: ReportContext) -> Section:
    section = Section("delong", "DeLong tests")
    section.text("Paired: two models on the same cases of one set. Unpaired: one model's cross-validated "
                 "training AUC against a held-out cohort. Fast DeLong (Sun & Xu 2014); macro rows compare "
                 "macro-average one-vs-rest AUCs; patients with several ROIs are clustered.")
    frame = pd.DataFrame(paired_comparisons(ctx) + unpaired_comparisons(ctx))
    if frame.empty:
        section.unavailable("needs two models on the same cases, or out-of-fold and held-out predictions")
        return section
    summary = held_out_summary(ctx, frame)
    if len(summary):
        keys = summary.set_index(["model1", "model2", "cohort"])["p_holm"]
        holm_of = {k: v for k, v in keys.items()}
        holm_of.update({(m2, m1, c): v for (m1, m2, c), v in keys.items()})
        frame["p_holm_summary"] = [holm_of.get((r.model1, r.model2, r.set1)) if r.type == "paired" and
                                   r["class"] == "macro" else None for _, r in frame.iterrows()]
    write_csv(ctx.run_dir / DELONG_TABLE, frame)
    ctx.out["delong"] = frame.replace({np.nan: None}).to_dict(orient="records")
    ctx.out["delong_summary"] = summary.replace({np.nan: None}).to_dict(orient="records")
    if summary.empty:
        section.unavailable("no held-out cohort holds both a fused and a single-block model; every comparison is "
                            f"in {DELONG_TABLE}")
        return section
    section.text(f"Summary: each fused feature set's model against each single block's model, macro-average AUC, "
                 f"on each held-out cohort (paired DeLong). p (Holm): Holm's step-down adjustment over the "
                 f"{len(summary)} comparisons of this table. Training-cohort and cross-cohort tests, per-class "
                 f"tests and all {len(frame)} rows are in {DELONG_TABLE}.")
    section.table(_summary_table(summary), "held-out comparisons: fused vs single block")
    shown = summary.assign(comparison=summary["model1"] + " vs " + summary["model2"] + " (" + summary["cohort"] + ")")
    fig = figures.interval_figure(shown, "comparison", "difference", "ci_low", "ci_high",
                                  "difference in macro AUC, fused - single block (95% CI, unadjusted)",
                                  "DeLong: fused vs single block, held-out cohorts", reference=0.0,
                                  annotations=["Holm p " + format_p(p) for p in summary["p_holm"]])
    section.blocks.append(figure_row([ctx.figures.embed(fig, "delong_forest_fused_vs_single", wide=True)]))
    return section
