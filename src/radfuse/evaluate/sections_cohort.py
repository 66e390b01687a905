"""Cohorts, Table 1 and the combined clinical + rad-score model with its nomogram."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radfuse.data.manifest import COHORTS
from radfuse.evaluate import delong, metrics, nomogram, table1
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.html import Section, figure_row, format_p


def cohort_section(ctx: ReportContext) -> Section:
    section = Section("cohorts", "Cohorts and baseline characteristics (Table 1)")
    refit = ctx.predictions.drop_duplicates("case_id")
    counts = pd.crosstab(refit["cohort"].astype(str), refit["label"].astype(str)).reindex(
        columns=ctx.classes, fill_value=0).rename_axis(index="cohort", columns=None)
    counts = counts.loc[sorted(counts.index, key=_cohort_order)]
    counts["patients"] = refit.groupby(refit["cohort"].astype(str))["patient_id"].nunique()
    section.table(counts.reset_index(), "cases per cohort and class (study order)")
    ctx.out["cohorts"] = counts.to_dict(orient="index")
    if ctx.manifest is None:
        section.unavailable("Table 1 needs the manifest (pass --manifest or manifest=)")
        return section
    missing = [c for c in ctx.clinical if c not in ctx.manifest]
    clinical = [c for c in ctx.clinical if c in ctx.manifest]
    if missing:
        section.text(f"clinical columns not in the manifest, left out: {missing}")
    if not clinical:
        section.unavailable("no clinical columns declared (clinical_columns / --clinical)")
        return section
    patients = ctx.manifest.drop_duplicates("patient_id")  # one row per patient: ROIs would repeat a patient
    tables = {}
    if "cohort" in patients and patients["cohort"].nunique() > 1:
        tables["by cohort"] = table1.baseline_table(patients, clinical, "cohort", order=COHORTS)
    in_train = patients["cohort"].astype(str) == "train" if "cohort" in patients else pd.Series(False)
    train = patients[in_train] if in_train.any() else patients  # no 'train' cohort: compare classes overall
    tables["by class (training cohort)"] = table1.baseline_table(train, clinical, "label")
    for name, table in tables.items():
        shown = table.assign(p_value=table["p_value"].map(format_p))
        section.table(shown, f"Table 1 {name}")
    ctx.out["table1"] = {k: t.replace({np.nan: None}).to_dict(orient="records") for k, t in tables.items()}
    ctx.out["baseline_significant"] = table1.significant_variables(tables["by class (training cohort)"])
    return section


def nomogram_section(ctx: ReportContext) -> Section:
    section = Section("nomogram", "Combined model and nomogram")
    # the best selected model by the run's one selection rule supplies the score, among the feature sets without
    # the clinical block: a score built on clinical variables plus those variables again would count them twice
    excluded = [k for k in ctx.selected if ctx.has_clinical(k[0])]
    candidates = [k for k in ctx.selected if k not in excluded]
    key = max(candidates, key=ctx.selection_score) if candidates else None
    sets = ctx.sets(key) if key else {}
    if metrics.OOF_SET not in sets:
        section.unavailable("needs out-of-fold training predictions of a feature set without the clinical block to "
                            "fit the combined model without leakage")
        return section
    clinical = list(ctx.out.get("baseline_significant", []))
    score = ctx.score_name(key[0])
    section.text(f"Logistic regression on the {score} (logit of the out-of-fold probability of "
                 f"{model_label(key)}) plus clinical variables that differ between classes at baseline "
                 f"(p < 0.05 in Table 1): {', '.join(clinical) or 'none'}; fitted on the training cohort. Its "
                 f"'{metrics.OOF_SET}' AUC is cross-fitted: in each CV fold the variables are chosen and the model "
                 "fitted on the other folds only.")
    if excluded:
        section.text(f"Not used as the score: {', '.join(model_label(k) for k in excluded)}; its feature set already "
                     "contains the clinical block, so adding the clinical variables again would count them twice. "
                     f"The score is the best selected model without it ({model_label(key)}, by the selection rule).")
    if ctx.manifest is None:
        section.text(f"no manifest: the combined model holds the {score} only")
    manifest = ctx.manifest if ctx.manifest is not None else pd.DataFrame({"case_id": ctx.predictions["case_id"]})
    targets = ctx.classes[-1:] if len(ctx.classes) == 2 else ctx.classes
    tags, results = [], {}
    for c in targets:
        train = nomogram.combined_inputs(sets[metrics.OOF_SET], manifest, c, clinical)
        model = nomogram.fit_combined(train, (train["label"].astype(str) == c).to_numpy(), ["rad_score", *clinical])
        aucs = _combined_aucs(model, sets, manifest, c, clinical)
        aucs[metrics.OOF_SET] = _cross_fitted_auc(ctx, sets[metrics.OOF_SET], manifest, c)
        results[c] = {"coefficients": model.coef, "intercept": model.intercept, "auc": aucs}
        title = f"class {c} vs rest" if len(ctx.classes) > 2 else f"class {c}"
        nomo = nomogram.build_nomogram(model, labels={"rad_score": score})
        tags.append(ctx.figures.embed(nomogram.plot_nomogram(nomo, f"{title} ({score} of {model_label(key)})"),
                                      f"nomogram_class_{c}", wide=True))
    section.table(pd.DataFrame([{"class": c, **{f"AUC {s}": _fmt(v) for s, v in r["auc"].items()}}
                                for c, r in results.items()]), "combined-model AUC (DeLong 95% CI)")
    section.table(pd.DataFrame([{"class": c, "intercept": r["intercept"],
                                 **{k.replace("rad_score", score): v for k, v in r["coefficients"].items()}}
                                for c, r in results.items()]), "coefficients (raw scale)")
    section.blocks.append(figure_row(tags))
    ctx.out["combined_model"] = {"model": model_label(key), "score": score, "clinical": clinical,
                                 "excluded": [model_label(k) for k in excluded], "per_class": results}
    return section


def _cross_fitted_auc(ctx: ReportContext, oof: pd.DataFrame, manifest: pd.DataFrame, class_name: str) -> list:
    """Training-cohort AUC of the combined model, cross-fitted like every other training-cohort figure: for each CV
    fold, the clinical variables are chosen (Table 1 by class, p < 0.05) and the model fitted on the other folds'
    out-of-fold rows only, then scored on the fold. Folds: the fitting stage's (extras['fold_of_case']), else
    seeded patient-grouped stratified folds."""
    data = nomogram.combined_inputs(oof, manifest, class_name, ctx.clinical if ctx.manifest is not None else [])
    fold = _folds_of(ctx, oof)
    patients = manifest.drop_duplicates("patient_id").set_index("patient_id") if "patient_id" in manifest else None
    proba = pd.Series(np.nan, index=data.index)
    for k in sorted(fold.dropna().unique()):
        fit_rows, score_rows = (fold != k).to_numpy(), (fold == k).to_numpy()
        chosen = []
        if patients is not None and ctx.clinical and ctx.manifest is not None:
            in_fold = patients.loc[patients.index.isin(oof.loc[fit_rows, "patient_id"])].reset_index()
            table = table1.baseline_table(in_fold, [c for c in ctx.clinical if c in in_fold], "label")
            chosen = table1.significant_variables(table)
        variables = ["rad_score", *chosen]
        fit = data[fit_rows]
        model = nomogram.fit_combined(fit, (fit["label"].astype(str) == class_name).to_numpy(), variables)
        held = data[score_rows]
        complete = held[variables].notna().all(axis=1)
        proba.loc[held.index[complete]] = model.predict_proba(held[complete])
    scored = proba.notna().to_numpy()
    y = (data.loc[scored, "label"].astype(str) == class_name).to_numpy()
    try:
        return list(delong.auc_ci(y, proba[scored].to_numpy()))
    except ValueError:
        return [None, None, None]


def _folds_of(ctx: ReportContext, rows: pd.DataFrame) -> pd.Series:
    given = ctx.extras.get("fold_of_case")
    if given:
        return rows["case_id"].map({str(c): int(k) for c, k in given.items()}).set_axis(rows.index)
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=ctx.seed)
    fold = pd.Series(np.nan, index=rows.index)
    for k, (_, test) in enumerate(splitter.split(rows, rows["label"].astype(str), rows["patient_id"].astype(str))):
        fold.iloc[test] = k
    return fold


def _combined_aucs(model, sets, manifest, class_name, clinical) -> dict:
    out = {}
    for name, frame in sets.items():
        data = nomogram.combined_inputs(frame, manifest, class_name, clinical)
        complete = data[["rad_score", *clinical]].notna().all(axis=1)
        y = (data.loc[complete, "label"].astype(str) == class_name).to_numpy()
        try:
            out[name] = list(delong.auc_ci(y, model.predict_proba(data[complete])))
        except ValueError:
            out[name] = [None, None, None]
    return out


def _cohort_order(name: str) -> tuple[int, str]:
    return (COHORTS.index(name) if name in COHORTS else len(COHORTS), name)


def _fmt(v: list) -> str:
    return "n/a" if v[0] is None else f"{v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})"
