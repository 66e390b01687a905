"""Methods written from the run's own configuration and artefacts (never from what radfuse would do by default).

Inputs: extras['config'] (the resolved fuse config), the extract run folder next to the feature tables named in
config['tables'] (radiomics_params.json, grey_levels.csv, icc.parquet, deep_sources.json, config.yaml,
provenance.json, failures.csv) and the train runs deep_sources.json names. Whatever is missing reads "not recorded".
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import yaml

from radfuse.artifacts import (CONFIG_FILE, DEEP_SOURCES_FILE, FAILURES_TABLE, GREY_LEVELS_TABLE, ICC_TABLE,
                               PROVENANCE_FILE, RADIOMICS_PARAMS_FILE)
from radfuse.data.manifest import COHORTS
from radfuse.evaluate import intervals
from radfuse.evaluate.context import ReportContext
from radfuse.evaluate.html import Section

NOT_RECORDED = "not recorded"


def _read(path: Path | None):
    """JSON / YAML / CSV / parquet by suffix; None when absent or unreadable."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(path.read_text())
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
    except Exception:  # a damaged artefact is reported as not recorded, never a failed report
        return None
    return None


def _get(tree, *keys, default=None):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree


def _short(target) -> str:
    return str(target).rsplit(".", 1)[-1] if target else "?"


def _list(values) -> str:
    return ", ".join(str(v) for v in values) if values else "none"


class RunFiles:
    """Where this run's upstream artefacts live."""

    def __init__(self, config: dict):
        self.config = config or {}
        tables = [Path(p) for p in (self.config.get("tables") or {}).values() if p]
        parents = [p.parent for p in tables if p.parent.is_dir()]
        self.extract = parents[0] if parents else None

    def extract_file(self, name: str):
        return _read(self.extract / name) if self.extract else None

    def train_config(self, run: str):
        out = _get(self.config, "paths", "out")
        candidates = [Path(out) / "train" / run] if out else []
        if self.extract is not None:
            candidates.append(self.extract.parent.parent / "train" / run)
        for folder in candidates:
            found = _read(folder / CONFIG_FILE)
            if found is not None:
                return found
        return None


def _cases(ctx: ReportContext) -> pd.DataFrame:
    """One row per ROI with its cohort: the manifest's, else the cohort the predictions give each case."""
    scored = ctx.predictions.drop_duplicates("case_id")
    if ctx.manifest is None:
        return scored
    frame = ctx.manifest.copy()
    if "cohort" not in frame:
        frame = frame.merge(scored[["case_id", "cohort"]], on="case_id", how="left")
    if "patient_id" not in frame:
        frame["patient_id"] = frame["case_id"]
    frame["cohort"] = frame["cohort"].fillna("not evaluated")
    return frame


def cohorts_paragraph(ctx: ReportContext, files: RunFiles) -> str:
    config = files.config
    frame = _cases(ctx)
    parts = []
    for cohort in sorted(frame["cohort"].astype(str).unique(), key=_cohort_key) if "cohort" in frame else []:
        rows = frame[frame["cohort"].astype(str) == cohort]
        sites = sorted(rows["site"].astype(str).unique()) if "site" in rows else []
        parts.append(f"{cohort}: {rows['patient_id'].nunique()} patients, {len(rows)} ROIs"
                     + (f", site(s) {_list(sites)}" if sites else ""))
    split = _get(config, "data", "split") or {}
    text = f"Classes: {_list(ctx.classes)}. Cohorts: {'; '.join(parts) or NOT_RECORDED}."
    if split:
        text += (f" The internal test cohort is {split.get('internal_fraction', '?')} of the development patients "
                 f"(seed {split.get('seed', '?')}); {split.get('n_folds', '?')} cross-validation folds by patient.")
    clinical = _get(config, "data", "clinical")
    text += f" Clinical variables: {_list(f'{k} ({v})' for k, v in clinical.items()) if clinical else NOT_RECORDED}."
    return text


def preprocessing_paragraph(files: RunFiles) -> str:
    data = _get(files.config, "data") or {}
    if not data:
        return f"Image preprocessing: {NOT_RECORDED}."
    crop = _get(files.extract_file(CONFIG_FILE), "extract", "crop")
    return (f"Images: {data.get('mode', '?')} input, resampled to spacing {data.get('spacing', '?')} mm, window "
            f"{data.get('window', '?')}, intensity normalisation {data.get('normalize', '?')}; ROI crops of "
            f"{data.get('size', '?')} px ({data.get('aspect', '?')} aspect, margin {data.get('margin', '?')}), "
            f"{data.get('axis', '?')} axis, {data.get('channels', '?')} channel(s). Radiomics crop to the mask: "
            f"{NOT_RECORDED if crop is None else crop}.")


def cnn_paragraph(files: RunFiles) -> str:
    sources = files.extract_file(DEEP_SOURCES_FILE)
    if not sources:
        return f"CNN and its training: {NOT_RECORDED} (no deep_sources.json next to the feature tables)."
    texts = []
    for table, source in sources.items():
        runs = source.get("runs") or ({source["train_run"]: source} if source.get("train_run") else {})
        kind = source.get("source", "?")
        described = []
        for name, run in runs.items():
            described.append(f"{name} ({run.get('checkpoint', '?')}, epoch {run.get('epoch', '?')}, validated on "
                             f"{run.get('validated_on') or NOT_RECORDED})")
        texts.append(f"{table}: {kind} features from {_list(described) if described else NOT_RECORDED}")
        first = next(iter(runs), None)
        train = files.train_config(first) if first else None
        if train:
            model, opt, trainer = train.get("model") or {}, train.get("optimizer") or {}, train.get("trainer") or {}
            backbone = train.get("backbone") or {}
            texts[-1] += (f"; CNN {model.get('arch', '?')} (backbone {backbone.get('name', '?')}, pretrained "
                          f"{backbone.get('pretrained', '?')}), {_short(opt.get('_target_'))} lr {opt.get('lr', '?')}, "
                          f"weight decay {opt.get('weight_decay', '?')}, {_short(_get(train, 'scheduler', '_target_'))}"
                          f" schedule, {trainer.get('max_epochs', '?')} epochs, batch "
                          f"{_get(train, 'data', 'batch_size', default='?')}, class weights "
                          f"{model.get('class_weights', '?')}, label smoothing {model.get('label_smoothing', '?')}")
        elif first:
            texts[-1] += f"; training configuration of {first}: {NOT_RECORDED}"
    return "Deep features: " + ". ".join(texts) + "."


def radiomics_paragraph(files: RunFiles) -> str:
    params = files.extract_file(RADIOMICS_PARAMS_FILE)
    if not params:
        return f"Radiomics settings: {NOT_RECORDED}."
    setting = params.get("setting") or {}
    binning = (f"fixed bin width {setting['binWidth']}" if "binWidth" in setting else
               f"fixed bin count {setting['binCount']}" if "binCount" in setting else "default binning (bin width 25)")
    version = _get(files.extract_file(PROVENANCE_FILE), "versions") or {}
    software = next((f"{k} {v}" for k, v in version.items() if "radiomics" in k.lower()), "PyRadiomics")
    text = (f"Radiomics with {software}: image types {_list(params.get('imageType') or {})}; feature classes "
            f"{_list(params.get('featureClass') or {})}; {binning}; normalisation {setting.get('normalize', False)}"
            f" (scale {setting.get('normalizeScale', 1)}); resampled to {setting.get('resampledPixelSpacing', 'none')}"
            f" with {setting.get('interpolator', 'default')} interpolation; other parameters at PyRadiomics defaults.")
    grey = files.extract_file(GREY_LEVELS_TABLE)
    if isinstance(grey, pd.DataFrame) and len(grey):
        rows = [f"{r['image']}: median {r['median']:g} grey levels per ROI (minimum {r['min']:g}, 5th percentile "
                f"{r['p05']:g}, {100 * r['fraction_below']:.1f}% of ROIs below the floor; {int(r['n_rois'])} ROIs)"
                for _, r in grey.iterrows()]
        text += " Grey levels: " + "; ".join(rows) + "."
    else:
        text += f" Grey-level summary: {NOT_RECORDED}."
    return text


def icc_paragraph(files: RunFiles) -> str:
    icc = files.extract_file(ICC_TABLE)
    step = _get(files.config, "blocks", "rad", "icc") or {}
    if not isinstance(icc, pd.DataFrame) or icc.empty:
        return f"Segmentation reliability (ICC): {NOT_RECORDED}."
    column, threshold = step.get("icc_column", "icc2_1"), step.get("threshold")
    n_patients = int(icc["n"].max()) if "n" in icc else None
    text = (f"Reliability: ICC of {len(icc)} radiomic features on repeated segmentations"
            + (f" of {n_patients} patients" if n_patients else "") + ".")
    if threshold is not None and column in icc:
        kept = int((icc[column] >= float(threshold)).sum())
        text += f" Kept at {column} >= {threshold}: {kept} of {len(icc)} features."
    else:
        text += f" ICC filter threshold: {NOT_RECORDED}."
    return text


def harmonisation_paragraph(files: RunFiles) -> str:
    blocks = _get(files.config, "blocks") or {}
    found = [f"{name}: {_short(step.get('_target_'))} by {step.get('site_column', '?')} (covariates "
             f"{_list(step.get('covariates'))}, unseen sites: {step.get('unseen_site', '?')})"
             for name, steps in blocks.items() for key, step in (steps or {}).items()
             if isinstance(step, dict) and "combat" in (key + str(step.get("_target_", ""))).lower()]
    if not blocks:
        return f"Harmonisation: {NOT_RECORDED}."
    return "Harmonisation: " + ("; ".join(found) if found else "none") + "."


def missing_data_paragraph(files: RunFiles) -> str:
    blocks = _get(files.config, "blocks") or {}
    found = [f"{name}: {_short(step.get('_target_'))}" for name, steps in blocks.items()
             for key, step in (steps or {}).items() if isinstance(step, dict) and "imput" in key.lower()]
    if not blocks:
        return f"Missing data: {NOT_RECORDED}."
    return ("Missing feature values: " + ("; ".join(found) + ", fitted on training folds only" if found else
                                          "no imputation step configured") +
            ". Cases whose features failed are listed in the extract run's failures.csv and not evaluated.")


def selection_paragraph(files: RunFiles) -> str:
    blocks = _get(files.config, "blocks") or {}
    if not blocks:
        return f"Feature selection and fusion: {NOT_RECORDED}."
    described = []
    for name, steps in blocks.items():
        chain = []
        for key, step in (steps or {}).items():
            if not isinstance(step, dict):
                continue
            extra = {k: v for k, v in step.items() if k in ("threshold", "method", "n_splits", "n_lambdas")}
            chain.append(f"{key} ({_short(step.get('_target_'))}"
                         + (", " + ", ".join(f"{k} {v}" for k, v in extra.items()) if extra else "") + ")")
        described.append(f"{name}: {' -> '.join(chain) or 'as is'}")
    sets = _get(files.config, "feature_sets") or {}
    final = _get(files.config, "final") or {}
    return ("Per block, fitted within each training fold: " + "; ".join(described) + ". Feature sets: "
            + ("; ".join(f"{k} = {' + '.join(map(str, v))}" for k, v in sets.items()) or NOT_RECORDED)
            + ". After concatenation: " + (" -> ".join(f"{k} ({_short(v.get('_target_'))})" for k, v in final.items()
                                            if isinstance(v, dict)) or "none") + ".")


def classifiers_paragraph(ctx: ReportContext, files: RunFiles) -> str:
    classifiers = _get(files.config, "classifiers") or {}
    use = _get(files.config, "use_classifiers")
    names = [n for n in classifiers if not use or n in use]
    grids = [f"{n} ({_short(_get(classifiers, n, 'estimator', '_target_'))}; grid "
             f"{_list(f'{k}: {v}' for k, v in (_get(classifiers, n, 'grid') or {}).items()) or 'none'})" for n in names]
    cv = _get(files.config, "cv") or {}
    return (f"Classifiers: {'; '.join(grids) or NOT_RECORDED}. Tuning: grid search in {cv.get('n_splits', '?')}-fold "
            f"patient-grouped cross-validation (folds: {cv.get('folds', '?')}, seed {cv.get('seed', '?')}). "
            f"Selection: {ctx.selection_rule}")


def validation_paragraph(ctx: ReportContext) -> str:
    return ("Validation: out-of-fold predictions on the training cohort (train_cv) and the final model refitted on "
            "the whole training cohort, applied unchanged to every held-out cohort (internal, external, "
            "prospective). Cut-offs: Youden on train_cv. Intervals: patient-level bootstrap "
            f"({ctx.n_resamples} resamples, seed {ctx.seed}; percentile and BCa), Wilson for proportions, DeLong "
            f"for AUC comparisons with Holm adjustment. {intervals.RULE}")


def flow_table(ctx: ReportContext, files: RunFiles) -> pd.DataFrame:
    """Patients and ROIs per cohort: in the manifest, refused or failed at extraction, evaluated."""
    manifest = _cases(ctx)
    failures = files.extract_file(FAILURES_TABLE)
    failed = set(failures["case_id"].astype(str)) if isinstance(failures, pd.DataFrame) and "case_id" in failures \
        else None
    evaluated = ctx.predictions.drop_duplicates("case_id")
    rows = []
    for cohort in sorted(manifest["cohort"].astype(str).unique(), key=_cohort_key):
        listed = manifest[manifest["cohort"].astype(str) == cohort]
        scored = evaluated[evaluated["cohort"].astype(str) == cohort]
        lost = listed[listed["case_id"].astype(str).isin(failed)] if failed is not None else None
        rows.append({"cohort": cohort, "patients listed": listed["patient_id"].nunique(), "ROIs listed": len(listed),
                     "ROIs refused or failed at extraction": NOT_RECORDED if lost is None else len(lost),
                     "patients evaluated": scored["patient_id"].nunique(), "ROIs evaluated": len(scored)})
    return pd.DataFrame(rows)


PARAGRAPHS = (("Cohorts and sites", cohorts_paragraph), ("Image preprocessing and crops", preprocessing_paragraph),
              ("CNN and its training", cnn_paragraph), ("Radiomics", radiomics_paragraph),
              ("Reliability (ICC)", icc_paragraph), ("Harmonisation", harmonisation_paragraph),
              ("Missing data", missing_data_paragraph),
              ("Feature selection and fusion", selection_paragraph), ("Classifiers and tuning", classifiers_paragraph),
              ("Validation and statistics", validation_paragraph))


def methods_section(ctx: ReportContext) -> Section:
    section = Section("methods", "Methods (written from this run's configuration and artefacts)")
    files = RunFiles(ctx.extras.get("config") or {})
    written = {}
    for title, build in PARAGRAPHS:
        args = [ctx if name == "ctx" else files for name in inspect.signature(build).parameters]
        try:
            written[title] = build(*args)
        except Exception as err:  # a malformed input is reported, never a failed report
            written[title] = f"{title}: {NOT_RECORDED} ({type(err).__name__})"
        section.blocks.append(f"<h3>{title}</h3>")
        section.text(written[title])
    try:
        flow = flow_table(ctx, files)
        section.table(flow, "patient and ROI flow per cohort")
        ctx.out["flow"] = flow.to_dict(orient="records")
    except Exception as err:
        section.text(f"Patient and ROI flow: {NOT_RECORDED} ({type(err).__name__})")
    section.text(f"Source of these paragraphs: the resolved fuse configuration and the extract run folder "
                 f"{files.extract or NOT_RECORDED}.")
    ctx.out["methods"] = written
    return section


def _cohort_key(name: str) -> tuple[int, str]:
    return (COHORTS.index(name) if name in COHORTS else len(COHORTS), name)

