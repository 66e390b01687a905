"""`build_report`: every number into metrics.json, every figure into figures/, all of it into report.html."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from radfuse.artifacts import (METRICS_FILE, PREDICTION_COLUMNS, REPORT_FILE, prob_columns, write_csv, write_json,
                               write_text)
from radfuse.evaluate import metrics
from radfuse.evaluate.context import ReportContext, model_label, select_models
from radfuse.evaluate.html import FigureSink, Section, page
from radfuse.evaluate.sections_calibration import calibration_section, decision_curve_section
from radfuse.evaluate.sections_cohort import cohort_section, nomogram_section
from radfuse.evaluate.sections_delong import delong_section
from radfuse.evaluate.sections_checklist import checklist_section
from radfuse.evaluate.sections_methods import methods_section
from radfuse.evaluate.sections_explain import features_section, gradcam_section, provenance_section, shap_section
from radfuse.evaluate.sections_performance import (classifier_comparison, confusion_section, performance_table,
                                                   roc_section)

EVALUATE_KEYS = "evaluate_keys"  # the top-level metrics.json keys this module owns
FIGURES_DIR = "figures"
FIGURE_INDEX = "index.csv"  # which report section each file under figures/ belongs to
SECTIONS = (methods_section, cohort_section, features_section, classifier_comparison, performance_table, roc_section,
            delong_section, decision_curve_section, calibration_section, shap_section, nomogram_section,
            confusion_section, gradcam_section, provenance_section)


def check_predictions(predictions: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Fail early, naming the missing columns and the fix; ids and labels become strings."""
    required = [c for c in PREDICTION_COLUMNS if c not in ("site", "pred", "patient_id")] + prob_columns(classes)
    missing = [c for c in required if c not in predictions]
    if missing:
        raise ValueError(f"predictions table lacks column(s) {missing}; expected the schema of "
                         f"radfuse.artifacts (PREDICTION_COLUMNS + prob__<class> for classes {classes})")
    frame = predictions.copy()
    if "patient_id" not in frame:
        frame["patient_id"] = frame["case_id"]  # one ROI per patient unless told otherwise
    for column in ("case_id", "patient_id", "label", "cohort", "feature_set", "model", "split"):
        frame[column] = frame[column].astype(str)
    if "pred" in frame:
        frame["pred"] = frame["pred"].astype(str)
    broken = frame.loc[frame[prob_columns(classes)].isna().any(axis=1), "case_id"]
    if len(broken):
        raise ValueError(f"predictions hold missing probabilities for case(s) {sorted(set(broken))[:10]}; drop "
                         "those rows (e.g. cases whose features failed) before evaluating")
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} in the predictions are not among classes {classes}")
    return frame


def overview_section(ctx: ReportContext) -> Section:
    section = Section("overview", "Overview")
    all_models = metrics.model_keys(ctx.predictions)
    section.text(f"Classes: {', '.join(ctx.classes)}. {len(all_models)} models in the predictions "
                 f"({len({k[0] for k in all_models})} feature sets); reported in detail (the winner of each feature "
                 f"set): {', '.join(model_label(k) for k in ctx.selected)}.")
    section.text(f"Model selection: {ctx.selection_rule}")
    section.text(f"Evaluation sets: '{metrics.OOF_SET}' = out-of-fold predictions on the training cohort; "
                 "each cohort name = the final (refit) model on that cohort ('train' = apparent performance).")
    for note in ctx.extras.get("notes", []):
        section.text(note)
    for caution in ctx.extras.get("cautions", []):
        section.text(f"Caution: {caution}")
    ctx.out["cautions"] = list(ctx.extras.get("cautions", []))
    section.text(f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}; numbers in "
                 f"{METRICS_FILE}, figures (300-dpi PNG and PDF) in {FIGURES_DIR}/, listed by section in "
                 f"{FIGURES_DIR}/{FIGURE_INDEX}.")
    return section


def build_report(run_dir: Path, predictions: pd.DataFrame, *, classes: list[str],
                 manifest: pd.DataFrame | None = None, clinical_columns: list[str] = (),
                 extras: dict | None = None) -> Path:
    """Evaluate every (feature_set, model) of `predictions` and write report.html, metrics.json, delong.csv,
    shap_values.parquet and figures/ under run_dir. Returns the path of report.html.

    extras (all optional): pipelines {feature_set: fitted Pipeline}, X_train {feature_set: DataFrame indexed
    by case_id}, lasso {path, coefs, lambda} (or one such dict per feature set), cv_results (DataFrame),
    config (dict; 'recalibration': 'platt' | 'isotonic' adds recalibrated calibration), versions (dict),
    gradcam (PNG paths), winners ({feature_set: model} to detail; default: best out-of-fold macro AUC),
    n_resamples (int, default 1000), seed (int), notes and cautions (sentences shown in the overview),
    figure_dpi (int, default 300: the resolution of figures/*.png).
    """
    run_dir = Path(run_dir)
    extras = dict(extras or {})
    classes = [str(c) for c in classes]
    ctx = ReportContext(run_dir, check_predictions(predictions, classes), classes, manifest,
                        list(clinical_columns), extras,
                        FigureSink(run_dir / FIGURES_DIR, file_dpi=int(extras.get("figure_dpi", 300))),
                        n_resamples=int(extras.get("n_resamples", 1000)), seed=int(extras.get("seed", 0)))
    for key in metrics.model_keys(ctx.predictions):
        ctx.model_metrics[model_label(key)] = metrics.evaluate_model(
            metrics.model_rows(ctx.predictions, *key), classes, n_resamples=ctx.n_resamples, seed=ctx.seed)
    ctx.selected = select_models(ctx)
    ctx.out.update(classes=classes, models=ctx.model_metrics, selected_models=[model_label(k) for k in ctx.selected])
    sections = [overview_section(ctx)]
    index = []
    for build in SECTIONS:
        before = len(ctx.figures.saved)
        try:
            sections.append(build(ctx))
        except Exception as err:  # one broken section must not cost the user the rest of the report
            failed = Section(build.__name__, build.__name__.replace("_", " "))
            failed.unavailable(f"this section failed: {type(err).__name__}: {err}")
            sections.append(failed)
            ctx.out.setdefault("section_errors", {})[build.__name__] = f"{type(err).__name__}: {err}"
        index += [{"file": p.name, "section": sections[-1].title, "anchor": sections[-1].anchor}
                  for p in ctx.figures.saved[before:]]
    write_csv(run_dir / FIGURES_DIR / FIGURE_INDEX, pd.DataFrame(index, columns=["file", "section", "anchor"]))
    sections.append(checklist_section(ctx, sections))  # last: it points to the sections that rendered
    write_json(run_dir / METRICS_FILE, merge_metrics(run_dir / METRICS_FILE, _clean(ctx.out)))
    return write_text(run_dir / REPORT_FILE, page("radfuse evaluation report", sections))


def merge_metrics(path: Path, ours: dict) -> dict:
    """Keep what another stage (fuse) wrote to the same metrics.json; replace what an earlier report wrote."""
    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key in existing.pop(EVALUATE_KEYS, []):
        existing.pop(key, None)
    return {**existing, **ours, EVALUATE_KEYS: sorted(ours)}


def _clean(obj):
    """JSON-safe: NaN / inf become null (json would write NaN, which is not JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj
