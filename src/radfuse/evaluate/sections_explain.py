"""Selected features (LASSO), SHAP, Grad-CAM overlays, and the exact configuration and package versions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from radfuse.artifacts import SHAP_TABLE, package_versions, write_parquet
from radfuse.data.validate import label_str
from radfuse.evaluate import figures, metrics, shap_explain
from radfuse.evaluate.context import ReportContext, model_label
from radfuse.evaluate.gradcam import CamPanel, cam_figure
from radfuse.evaluate.html import Section, figure_row, slug

LASSO_KEYS = ("path", "coefs", "lambda")


def _path_frames(path) -> dict[str, pd.DataFrame]:
    """LASSO path(s) as frames indexed by lambda, one per class for a multi-class (lambdas, classes, features)
    path: a DataFrame already, or {'lambdas', 'coefs', 'features'[, 'classes']}."""
    if isinstance(path, pd.DataFrame):
        return {"": path}
    if not (isinstance(path, dict) and {"lambdas", "coefs"} <= path.keys()):
        return {}
    lambdas, coefs = np.asarray(path["lambdas"], dtype=float), np.asarray(path["coefs"], dtype=float)
    if coefs.ndim == 2:
        coefs = coefs if coefs.shape[0] == len(lambdas) else coefs.T
        return {"": pd.DataFrame(coefs, index=lambdas, columns=path.get("features"))}
    classes = path.get("classes") or [str(k) for k in range(coefs.shape[1])]
    return {f"class {c}": pd.DataFrame(coefs[:, k, :], index=lambdas, columns=path.get("features"))
            for k, c in enumerate(classes)}


def _coefficient_frame(coefs, features=None, classes=None) -> pd.DataFrame:
    """Coefficients as features x (one column, or one column per class). Accepts a DataFrame, a mapping
    feature -> coefficient, or an sklearn-style (classes, features) / (features,) array with `features`."""
    if isinstance(coefs, pd.DataFrame):
        return coefs.astype(float)
    if isinstance(coefs, np.ndarray) and features is not None:
        matrix = np.atleast_2d(coefs).astype(float)
        columns = list(classes) if classes is not None and len(classes) == len(matrix) else None
        if len(matrix) == 1:
            columns = ["coefficient"]
        return pd.DataFrame(matrix.T, index=list(features), columns=columns or [str(k) for k in range(len(matrix))])
    return pd.Series(coefs, dtype=float).to_frame("coefficient")


def features_section(ctx: ReportContext) -> Section:
    section = Section("features", "Selected features (LASSO)")
    lasso = ctx.extras.get("lasso")
    if not lasso:
        section.unavailable("the fitting stage passed no LASSO results (extras['lasso'])")
        return section
    blocks = {"": lasso} if any(k in lasso for k in LASSO_KEYS) else lasso  # one LASSO, or one per feature set
    ctx.out["lasso"] = {}
    for name, entry in blocks.items():
        tags, chosen, label = [], entry.get("lambda"), name or "model"
        for part, frame in _path_frames(entry.get("path")).items():
            title = " ".join(filter(None, ["LASSO path", name, part]))
            fig = figures.lasso_path_figure(frame, chosen, title)
            tags.append(ctx.figures.embed(fig, f"lasso_path_{label}_{part}"))
        if entry.get("coefs") is not None:
            path = entry.get("path") if isinstance(entry.get("path"), dict) else {}
            coefs = _coefficient_frame(entry["coefs"], entry.get("features", path.get("features")),
                                       entry.get("classes", path.get("classes")))
            kept = coefs[(coefs != 0).any(axis=1)]
            score = ctx.score_name(name) if name else "score"
            shown_lambda = f"{chosen:.3g}" if isinstance(chosen, (int, float)) else str(chosen)
            section.table(kept.rename_axis("feature").reset_index(),
                          f"{name} selected features and {score} coefficients (lambda = {shown_lambda})".strip())
            for column in coefs.columns:
                tags.append(ctx.figures.embed(figures.coefficient_figure(coefs[column], f"{name} {column}".strip()),
                                              f"lasso_coefficients_{label}_{column}"))
            ctx.out["lasso"][label] = {"lambda": chosen, "coefficients": kept.to_dict(orient="index")}
        section.blocks.append(figure_row(tags))
    return section


def shap_section(ctx: ReportContext) -> Section:
    section = Section("shap", "SHAP explanations of the final model")
    pipelines, X_train = ctx.extras.get("pipelines") or {}, ctx.extras.get("X_train") or {}
    candidates = [k for k in ctx.selected if k[0] in pipelines and k[0] in X_train]
    if not candidates:
        section.unavailable("needs a fitted pipeline and its training features (extras 'pipelines' and 'X_train')")
        return section
    tables = []
    for key in candidates:
        try:
            result = shap_explain.explain_pipeline(pipelines[key[0]], X_train[key[0]], ctx.classes, seed=ctx.seed)
        except Exception as err:  # an unsupported classifier must not take the whole report down
            section.unavailable(f"{model_label(key)}: SHAP failed ({type(err).__name__}: {err})")
            continue
        section.blocks.append(_shap_figures(ctx, key, result))
        tables.append(result.table().assign(feature_set=key[0], model=key[1]))
        ctx.out.setdefault("shap", {})[model_label(key)] = {
            "explainer": result.explainer, "output": result.output, "n_cases": len(result.case_ids),
            "mean_abs": result.mean_abs().to_dict(orient="index")}
    if tables:
        write_parquet(ctx.run_dir / SHAP_TABLE, pd.concat(tables, ignore_index=True))
        section.text(f"SHAP values of every explained case are in {SHAP_TABLE}.")
    return section


def _shap_figures(ctx: ReportContext, key, result: shap_explain.ShapResult) -> str:
    label = model_label(key)
    tags = [ctx.figures.embed(shap_explain.plot_global_bar(result), f"shap_bar_{label}")]
    tags += [ctx.figures.embed(shap_explain.plot_beeswarm(result, k), f"shap_beeswarm_{label}_{c}")
             for k, c in enumerate(result.classes)]
    truth = dict(zip(ctx.predictions["case_id"].astype(str), ctx.predictions["label"].astype(str)))
    for k, cases in shap_explain.decision_cases(result, truth).items():
        tags.append(ctx.figures.embed(shap_explain.plot_decision(result, k, cases,
                                                                 bool(ctx.extras.get("show_case_ids"))),
                                      f"shap_decision_{label}_{result.classes[k]}"))
    head = (f"<h3>{label}</h3><p>{result.explainer} explainer, {len(result.case_ids)} training cases, values "
            f"in {result.output} units.</p>")
    return head + figure_row(tags)


def gradcam_section(ctx: ReportContext) -> Section:
    """CamPanels (extras 'gradcam', from the fuse stage) drawn and labelled here; PNG paths are embedded as given."""
    section = Section("gradcam", "Grad-CAM overlays")
    given = list(ctx.extras.get("gradcam") or [])
    panels = [p for p in given if isinstance(p, CamPanel)]
    present = [Path(p) for p in given if not isinstance(p, CamPanel) and Path(p).is_file()]
    if not panels and not present:
        section.unavailable("no train run linked to this report (extras 'gradcam' holds no Grad-CAM panel and no "
                            "existing PNG)")
        return section
    if panels:
        section.text(
            "Each panel shows the crop the CNN saw with the Grad-CAM heat map of the CNN that scored the case: for a "
            "training case the fold CNN trained without its CV fold (the out-of-fold score the model used), for "
            "any other case the mean of the fold CNNs' maps (the mean of their scores); the caption names the "
            "network. Labels: case (an anonymised number unless report.show_case_ids=true), true class, cohort, "
            "and the predicted probabilities of the model shown (the best selected fused model using that CNN's "
            "block; out-of-fold for a training case). The colour bar is the map's relative evidence for the "
            "class named, 0 to 1 (each map scaled to its peak).")
        labels = [gradcam_label(ctx, panel, n) for n, panel in enumerate(panels, 1)]
        section.blocks.append(figure_row([
            ctx.figures.embed(cam_figure(p.image, p.heat, label.title), label.name, label.caption)
            for p, label in zip(panels, labels)]))
        ctx.out["gradcam"] = [{"figure": label.name, **label.record} for label in labels]
    if present:
        section.text("Overlays given as PNG files, captioned with their case, true class, cohort and the predicted "
                     "probabilities of the best selected model (the case is found by the file name, which starts "
                     "with its case_id).")
        section.blocks.append(figure_row([ctx.figures.embed_file(p, gradcam_caption(ctx, p)) for p in present]))
    return section


@dataclass
class PanelLabel:
    name: str     # file stem under figures/
    title: str    # the figure's own title (lines)
    caption: str  # the report's caption
    record: dict  # metrics.json


def _shown_model(ctx: ReportContext, block: str | None) -> tuple[str, str] | None:
    """The best selected model fed by `block`, a fused one first; the best selected model when none is."""
    keys = list(ctx.selected) or metrics.model_keys(ctx.predictions)
    fed = [k for k in keys if block is not None and block in ctx.blocks_of(k[0])]
    fused = [k for k in fed if ctx.is_fused(k[0])]
    pool = fused or fed or keys
    return max(pool, key=ctx.selection_score) if pool else None


def gradcam_label(ctx: ReportContext, panel: CamPanel, number: int) -> PanelLabel:
    """Case (or 'case #n'), true class, cohort, the shown model's predicted probabilities, and which CNN."""
    show_ids = bool(ctx.extras.get("show_case_ids"))
    case = panel.case_id if show_ids else f"case #{number}"
    key = _shown_model(ctx, panel.block)
    rows = ctx.predictions[ctx.predictions["case_id"] == panel.case_id]
    if key is not None:
        rows = rows[(rows["feature_set"] == key[0]) & (rows["model"] == key[1])]
    oof = rows[rows["split"] == "oof"]
    row = (oof if len(oof) else rows[rows["split"] == "refit"]).head(1)
    truth, cohort = _truth_and_cohort(ctx, panel.case_id, row)
    if len(row) and key is not None:
        values = {c: float(row[f"prob__{c}"].iloc[0]) for c in ctx.classes}
        shown = values if len(values) <= 4 else {c: values[c] for c in dict.fromkeys(
            [truth, max(values, key=values.get)]) if c in values}
        kind = "out-of-fold" if len(oof) else "refit model"
        probs = f"{model_label(key)} ({kind}): " + ", ".join(f"P({c}) {v:.3f}" for c, v in shown.items())
    else:
        values, probs = {}, "no prediction for this case in the predictions table"
    head = f"{case} | true class {truth} | {cohort}"
    cam = f"Grad-CAM at {panel.layer} for class {panel.target}: {panel.cnn}"
    stem = f"gradcam_{case}" if show_ids else f"gradcam_case{number:02d}_class_{truth}"
    record = {"case": case, "true_class": truth, "cohort": cohort, "model": model_label(key) if key else None,
              "probabilities": values, "target_class": panel.target, "layer": panel.layer, "cnn": panel.cnn}
    return PanelLabel(slug(stem), "\n".join((head, probs, cam)), f"{head} - {probs} - {cam}", record)


def _truth_and_cohort(ctx: ReportContext, case: str, row: pd.DataFrame) -> tuple[str, str]:
    if len(row):
        return str(row["label"].iloc[0]), str(row["cohort"].iloc[0])
    manifest = ctx.manifest
    if manifest is not None and "case_id" in manifest:
        match = manifest[manifest["case_id"].astype(str) == case]
        if len(match):
            return (str(label_str(match["label"].iloc[0])) if "label" in match else "unknown",
                    str(match["cohort"].iloc[0]) if "cohort" in match else "unknown cohort")
    return "unknown", "unknown cohort"


def gradcam_caption(ctx: ReportContext, path: Path) -> str:
    """'P0001_roi1 - true class 0 - train - fused/lr: P(0) 0.812, P(1) ...' (the file name alone when unknown)."""
    rows = ctx.predictions[ctx.predictions["split"] == "refit"]
    if ctx.selected:
        key = max(ctx.selected, key=ctx.selection_score)
        rows = rows[(rows["feature_set"] == key[0]) & (rows["model"] == key[1])]
    cases = sorted(set(rows["case_id"]), key=len, reverse=True)
    case = next((c for c in cases if path.stem == c or path.stem.startswith(f"{c}_")), None)
    if case is None:
        return path.name
    row = rows[rows["case_id"] == case].iloc[0]
    probs = ", ".join(f"P({c}) {row[f'prob__{c}']:.3f}" for c in ctx.classes)
    return f"{case} - true class {row['label']} - {row['cohort']} - {row['feature_set']}/{row['model']}: {probs}"


def provenance_section(ctx: ReportContext) -> Section:
    section = Section("provenance", "Configuration and package versions")
    config = ctx.extras.get("config")
    if config:
        section.pre(yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False))
    else:
        section.unavailable("no configuration passed (extras 'config')")
    versions = ctx.extras.get("versions") or package_versions()
    section.table(pd.DataFrame(sorted(versions.items()), columns=["package", "version"]))
    ctx.out["config"], ctx.out["versions"] = config, versions
    return section
