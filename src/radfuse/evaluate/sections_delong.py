"""DeLong comparisons: paired (two models, same cases) per set, unpaired (one model, two cohorts)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from radfuse.artifacts import write_csv
from radfuse.evaluate import delong, figures, metrics
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.html import Section, figure_row, format_p

DELONG_TABLE = "delong.csv"


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


def delong_section(ctx: ReportContext) -> Section:
    section = Section("delong", "DeLong tests")
    section.text("Paired: two models on the same cases of one set. Unpaired: one model's cross-validated "
                 "training AUC against a held-out cohort. Fast DeLong (Sun & Xu 2014); macro rows compare "
                 "macro-average one-vs-rest AUCs; patients with several ROIs are clustered.")
    frame = pd.DataFrame(paired_comparisons(ctx) + unpaired_comparisons(ctx))
    if frame.empty:
        section.unavailable("needs two models on the same cases, or out-of-fold and held-out predictions")
        return section
    write_csv(ctx.run_dir / DELONG_TABLE, frame)
    ctx.out["delong"] = frame.replace({np.nan: None}).to_dict(orient="records")
    shown = [c for c in ("type", "model1", "model2", "set1", "set2", "class", "auc1", "auc2", "difference",
                         "ci_low", "ci_high", "z", "p_value", "note") if c in frame]
    section.table(frame[shown].assign(p_value=frame["p_value"].map(format_p)) if "p_value" in frame else frame[shown],
                  f"all comparisons (also in {DELONG_TABLE})")
    macro = frame[(frame["class"] == "macro") & frame["difference"].notna()].copy()
    if len(macro):
        macro["comparison"] = macro["model1"] + " vs " + macro["model2"] + " @ " + macro["set1"] + \
            np.where(macro["set1"] != macro["set2"], " vs " + macro["set2"], "")
        fig = figures.interval_figure(macro, "comparison", "difference", "ci_low", "ci_high",
                                      "difference in macro AUC (95% CI)", "DeLong comparisons", reference=0.0)
        section.blocks.append(figure_row([ctx.figures.embed(fig, "delong_macro")]))
    return section
