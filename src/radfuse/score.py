"""Score a new cohort with a finished study in one command: `radfuse score NEW_MANIFEST --study RUN_DIR --out DIR`.

The new manifest is validated against the study's classes (labels may be absent) and clinical columns; every
feature table is extracted the way the study extracted its own (its radiomics params and extract settings, the
mean of its fold CNNs for cross-fitted scores, its checkpoint for embeddings), joined with the clinical columns and
scored with the study's fitted pipelines. DIR/predictions.csv (and .parquet) holds, per case and feature set, the
winner's probabilities, the predicted class, the rad-score and the warnings a reader of one prediction needs:
feature values outside the training range, an unseen site and the ComBat policy used, missing clinical values and
what filled them. Nothing is written into the study's folders. DIR is a run folder (docs/runs.md): one scoring holds
it at a time (DIR/.lock), DIR/provenance.json hashes what it read, DIR/COMPLETE.json is written last, and a rerun
after a kill reuses DIR/cache/.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from radfuse import artifacts
from radfuse.artifacts import KEY_COLUMN, prob_columns
from radfuse.data import manifest as mf
from radfuse.data.manifest import ManifestError
from radfuse.data.problems import ManifestInvalid
from radfuse.export import RADIOMICS_PARAMS_FILE, Study, StudyError, combat_steps, feature_ranges, load_study
from radfuse.fuse.design import CLINICAL_BLOCK, META_PREFIX, block_table, design_frame
from radfuse.fuse.radscore import rad_score, radscore_columns
from radfuse.predict import model_input
from radfuse.run_lock import RunFolderLocked, run_lock

PREDICTIONS_CSV, PREDICTIONS_PARQUET = "predictions.csv", "predictions.parquet"
SCORE_CACHE = "cache"  # out/cache: radiomics per ROI and deep batches, reused by a rerun; not in COMPLETE.json
NEW_COHORT = "new"
TOP_OUT_OF_RANGE = 3


class ScoreError(ValueError):
    """The new cohort cannot be scored as asked (the message says why and what to do)."""


# ------------------------------------------------------------------------------------------------ manifest
def read_new_manifest(path: str | Path) -> pd.DataFrame:
    """`read_manifest` for new patients: the label column may be absent (it is then added, empty)."""
    path = Path(path)
    if path.is_file() and mf.LABEL not in [c.strip() for c in pd.read_csv(path, nrows=0).columns]:
        frame = pd.read_csv(path, dtype={mf.CASE_ID: str, mf.PATIENT_ID: str})
        frame.columns = [c.strip() for c in frame.columns]
        frame[mf.LABEL] = np.nan
        missing = [c for c in mf.REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ManifestError(f"manifest {path} lacks required column(s) {missing}; a manifest of new cases needs "
                                f"{[c for c in mf.REQUIRED_COLUMNS if c != mf.LABEL]} (label optional)")
        root = path.resolve().parent
        for column in (c for c in mf.PATH_COLUMNS if c in frame.columns):
            frame[column] = [v if not isinstance(v, str) or Path(v).is_absolute() else str(root / v.strip())
                             for v in frame[column]]
        frame.attrs["manifest_path"] = str(path.resolve())
        return frame
    return mf.read_manifest(path)


def validate_new(frame: pd.DataFrame, study: Study, path: Path, modality: str, resample_masks: bool) -> pd.DataFrame:
    """Refuse every manifest error except an absent label (or a clinical column missing in every row: new cases'
    values are filled by the study's imputer); return the frame with missing clinical values as NaN."""
    from radfuse.data.validate import validate_manifest

    problems = validate_manifest(frame, classes=study.classes, clinical=study.clinical, n_folds=0,
                                 resample_masks=resample_masks, manifest_file=str(path), modality=modality)
    allowed = [p for p in problems if p.is_error and (
        (p.column == mf.LABEL and p.message == "no label") or
        (p.column in study.clinical and p.message.startswith("every value of")))]
    fatal = [p for p in problems if p.is_error and p not in allowed]
    if fatal:
        raise ManifestInvalid(fatal, str(path))
    return mf.coerce_clinical(frame, study.clinical)


def check_out_folder(out: Path, study: Study) -> None:
    """The output folder must lie outside every folder of the study (fuse run, extract runs, fold CNNs)."""
    out = out.resolve()
    for owned in study.owned:
        if out == owned or out.is_relative_to(owned) or (owned.is_relative_to(out) and out != Path(out.anchor)):
            raise ScoreError(f"--out {out} overlaps the study's folder {owned}: scoring never writes into a study; "
                             "choose a new folder, e.g. --out scored/<cohort>")


# ------------------------------------------------------------------------------------------------ extract
def extract_tables(study: Study, frame: pd.DataFrame, path: Path, out: Path,
                   inputs: dict[str, Path] | None = None) -> dict[str, pd.DataFrame]:
    """Every block's feature table for the new cases, made as the study made its own, under out/extract/<block>/.
    `inputs` gets, per block, the study's files each table was made from (for provenance.json): the radiomics
    params, the fold CNN checkpoints and the study's splits.json (cross-fit), the checkpoint or weights file."""
    tables = {}
    for source in study.sources:
        read: dict[str, Path] = {}
        if source.kind == "radiomics":
            table_path = _radiomics(study, source, frame, out)
            read["radiomics_params"] = source.extract_dir / RADIOMICS_PARAMS_FILE
        else:
            table_path = _deep(study, source, frame, path, out, read)
        if inputs is not None:
            inputs.update({f"{source.block}/{name}": Path(file) for name, file in read.items()})
        tables[source.block] = block_table(pd.read_parquet(table_path), source.block, table_path)
    return tables


def _radiomics(study: Study, source, frame: pd.DataFrame, out: Path) -> Path:
    from radfuse.extract.radiomics import ExtractOptions
    from radfuse.extract.radiomics_run import extract_radiomics, rois_from_manifest

    params = json.loads((source.extract_dir / RADIOMICS_PARAMS_FILE).read_text(encoding="utf-8"))
    cfg = source.extract_cfg
    folder = artifacts.extract_dir(out, source.block)
    # the options that change feature values come from the study; speed and failure handling are this run's
    fast = cfg.extract.get("fast_kernels", cfg.extract.get("fast_glcm", True))  # a study saved before the rename
    options = ExtractOptions(crop=bool(cfg.extract.crop), fast_kernels=bool(fast),
                             resample_masks=bool(cfg.data.get("resample_masks", False)))
    print(f"[radfuse] score: radiomics of {len(frame)} ROI(s) with the study's params -> {folder}", flush=True)
    result = extract_radiomics(rois_from_manifest(frame, second_reader_cases=set()), params,
                               out / SCORE_CACHE / "radiomics", folder, workers=1, options=options, progress=False,
                               params_name=str(source.extract_dir / RADIOMICS_PARAMS_FILE),
                               refuse_few_grey_levels=False)
    if len(result.failures):
        print(f"[radfuse] score: {len(result.failures)} ROI(s) gave no radiomics and are not scored; reasons in "
              f"{folder / artifacts.FAILURES_TABLE}", flush=True)
    return folder / artifacts.RADIOMICS_TABLE


def _deep(study: Study, source, frame: pd.DataFrame, path: Path, out: Path, read: dict | None = None) -> Path:
    """Cross-fitted scores (the mean of the study's fold CNNs) or embeddings of its checkpoint, by the extract
    stage's own functions on a config derived from the study's extract config."""
    from radfuse.data.splits import Splits
    from radfuse.stages.common import Cohort
    from radfuse.stages.extract_deep import run_crossfit, run_deep

    cfg = copy.deepcopy(source.extract_cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.paths.out, cfg.paths.cache, cfg.run = str(out), str(out / SCORE_CACHE), source.block
    cfg.data.manifest = str(path)
    # every new case is outside the study: no fold CNN saw it, each gets their mean
    cohorts = {str(p): NEW_COHORT for p in frame[mf.PATIENT_ID].astype(str)}
    cohort = Cohort(frame, Splits(cohorts, {}, 1, 0, ""), study.classes, study.clinical, path)
    folder = artifacts.extract_dir(out, source.block)
    if source.kind == "crossfit":
        cfg.extract.deep.crossfit.train_out = str(study.train_out(source))
        print(f"[radfuse] score: cross-fitted CNN scores (mean of the study's fold CNNs) -> {folder}", flush=True)
        table = run_crossfit(cfg, cohort, read)
        if read is not None:  # crossfit_<run> -> each fold CNN's checkpoint; the folds come from splits.json
            read["splits"] = artifacts.splits_path(study.train_out(source))
        return table
    deep = cfg.extract.deep
    if deep.source == "checkpoint":
        deep.checkpoint = str(study._path(deep.checkpoint) if deep.checkpoint else artifacts.train_dir(
            study._path(source.extract_cfg.paths.out), deep.train_run) / str(deep.checkpoint_file))
    print(f"[radfuse] score: deep embeddings ({deep.source}, layer {deep.layer}) -> {folder}", flush=True)
    return run_deep(cfg, folder, cohort, read)


# ------------------------------------------------------------------------------------------------ predict
def build_design(study: Study, frame: pd.DataFrame, tables: dict[str, pd.DataFrame]):
    covariates = sorted({c.removeprefix(META_PREFIX) for p in study.model["pipelines"].values()
                         for step in combat_steps(p) for c in step.covariates})
    uses_clinical = any(CLINICAL_BLOCK in study.fuse_cfg.feature_sets[fs] for fs in study.model["pipelines"])
    categorical = [c for c, kind in study.clinical.items() if kind == "categorical"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unmatched and non-finite rows are reported per case below
        return design_frame(frame.assign(**{mf.COHORT: NEW_COHORT}), tables,
                            clinical=list(study.clinical) if uses_clinical else [], covariates=covariates,
                            categorical=categorical)


def predict(study: Study, design, ranges: pd.DataFrame) -> pd.DataFrame:
    """Per case and feature set: winner, predicted class, probabilities, rad-score and warnings."""
    classes, model = study.classes, study.model
    frames = []
    for fs, pipeline in model["pipelines"].items():
        X = model_input(design.X.reset_index(), model["feature_columns"][fs], model.get("categorical_clinical", []))
        policy = combat_policy(pipeline, design.sites)
        proba = np.empty((len(X), len(classes)))
        radscore = np.empty((len(X), len(radscore_columns(classes))))
        fallback = policy["policy"].str.startswith("reference (").to_numpy()
        for rows, fitted in ((~fallback, pipeline), (fallback, _reference_combat(pipeline))):
            if rows.any():
                proba[rows] = fitted.predict_proba(X[rows])
                radscore[rows] = rad_score(fitted, X[rows], len(classes), proba[rows])
        frame = pd.DataFrame({KEY_COLUMN: X.index, mf.PATIENT_ID: design.patients.to_numpy(),
                              mf.SITE: design.sites.to_numpy(), "feature_set": fs, "model": model["winners"][fs],
                              "pred": np.asarray(classes, dtype=object)[proba.argmax(axis=1)]})
        frame[prob_columns(classes)] = proba
        frame[radscore_columns(classes)] = radscore
        frame = pd.concat([frame, case_warnings(X, pipeline, ranges, policy, design.sites.to_numpy())], axis=1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def combat_policy(pipeline, sites: pd.Series) -> pd.DataFrame:
    """Per row: whether its site was in ComBat's training data and the policy that harmonises it. An unseen site
    under `estimate` with fewer rows than ComBat needs to estimate its effect falls back to `reference`."""
    steps = combat_steps(pipeline)
    seen = {str(s) for c in steps for s in c.sites_}
    counts = sites.astype(str).value_counts()
    rows = []
    for site in sites.astype(str):
        if not steps or site in seen:
            rows.append((True, "" if not steps else "trained site"))
            continue
        step = steps[0]
        if step.unseen_site == "error":
            raise ScoreError(f"site {site!r} is not among the study's ComBat sites {sorted(seen)} and the study's "
                             "ComBat refuses unseen sites (unseen_site=error): score cases of trained sites only, "
                             "or refit the study with blocks.rad.combat.unseen_site=estimate or reference")
        if step.unseen_site == "estimate" and counts[site] < step.min_unseen_rows:
            rows.append((False, f"reference (estimate needs >= {step.min_unseen_rows} ROIs of the site, "
                                f"{counts[site]} given)"))
        else:
            rows.append((False, step.unseen_site if step.unseen_site == "reference"
                         else f"estimate (from {counts[site]} ROIs of the site)"))
    return pd.DataFrame(rows, columns=["site_seen", "policy"], index=sites.index)


def _reference_combat(pipeline):
    """A copy of the pipeline whose ComBat steps treat an unseen site as the average site."""
    fallback = copy.deepcopy(pipeline)
    for step in combat_steps(fallback):
        step.unseen_site = "reference"
    return fallback


def case_warnings(X: pd.DataFrame, pipeline, ranges: pd.DataFrame, policy: pd.DataFrame,
                  site: np.ndarray) -> pd.DataFrame:
    """n_out_of_range, out_of_range (the farthest features), site_seen, combat_policy, clinical_filled, warnings."""
    features = [c for c in X.columns if c in ranges.index]
    values = X[features].to_numpy(dtype=float)
    low, high = ranges.loc[features, "min"].to_numpy(float), ranges.loc[features, "max"].to_numpy(float)
    width = np.where(high > low, high - low, 1.0)
    distance = np.maximum(low - values, values - high) / width  # > 0: outside, in training ranges
    outside = distance > 0
    fills = clinical_fills(pipeline)
    rows = []
    for i, case in enumerate(X.index):
        order = np.argsort(-np.nan_to_num(distance[i], nan=-np.inf))[:TOP_OUT_OF_RANGE]
        top = [f"{features[j]} ({'above max' if values[i, j] > high[j] else 'below min'} by "
               f"{distance[i, j]:.2g} x range)" for j in order if outside[i, j]]
        filled = [f"{c.removeprefix(CLINICAL_BLOCK + '__')} missing, filled with {fills[c]}" for c in X.columns
                  if c in fills and pd.isna(X[c].iloc[i])]
        non_finite = int((~np.isfinite(values[i])).sum())
        seen, used = bool(policy["site_seen"].iloc[i]), str(policy["policy"].iloc[i])
        notes = []
        if outside[i].any():
            notes.append(f"{int(outside[i].sum())} of {len(features)} feature values outside the training range: "
                         + ", ".join(top))
        if non_finite:
            notes.append(f"{non_finite} feature value(s) not finite, filled with the training median")
        if not seen:
            notes.append(f"site {site[i]!r} not among the study's training sites: ComBat unseen_site={used}")
        notes += filled
        rows.append({"n_out_of_range": int(outside[i].sum()), "out_of_range": "; ".join(top), "site_seen": seen,
                     "combat_policy": used, "clinical_filled": "; ".join(filled), "warnings": " | ".join(notes)})
    return pd.DataFrame(rows)


def clinical_fills(pipeline) -> dict[str, str]:
    """design column -> what the pipeline's fitted imputer puts in for a missing value ("63.5 (median)")."""
    from sklearn.impute import SimpleImputer

    fills = {}
    for imputer in _walk(pipeline):
        if isinstance(imputer, SimpleImputer) and hasattr(imputer, "statistics_"):
            for name, value in zip(imputer.feature_names_in_, imputer.statistics_):
                shown = f"{value:.4g}" if isinstance(value, (int, float, np.floating)) else repr(value)
                fills[str(name)] = f"{shown} (training {imputer.strategy.replace('_', ' ')}, the pipeline's imputer)"
    return fills


def _walk(estimator):
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _walk(step)
    for _, fitted, _ in getattr(estimator, "transformers_", []):
        yield from _walk(fitted)


# ------------------------------------------------------------------------------------------------ command
def score_manifest(manifest: str | Path, study_dir: str | Path, out: str | Path) -> pd.DataFrame:
    """The whole command as a function: returns the predictions table it writes to out/."""
    path, out = Path(manifest), Path(out)
    study = load_study(study_dir)
    check_out_folder(out, study)
    data = study.fuse_cfg.data
    frame = validate_new(read_new_manifest(path), study, path, str(data.get("modality", "ct")),
                         bool(data.get("resample_masks", False)))
    with run_lock(out):  # one scoring per folder at a time; checked before, so a refused input writes nothing
        artifacts.start_run(out)  # a killed (re)scoring is never taken for a finished one
        scored = _score(study, frame, path, out)
        artifacts.mark_complete(out, "score", skip=(SCORE_CACHE,))
    return scored


def _score(study: Study, frame: pd.DataFrame, path: Path, out: Path) -> pd.DataFrame:
    inputs: dict[str, Path] = {"manifest": path, "model": study.model_path,
                               "study_provenance": study.run_dir / artifacts.PROVENANCE_FILE}
    tables = extract_tables(study, frame, path, out, inputs)
    design = build_design(study, frame, tables)
    unscored = sorted(set(frame[mf.CASE_ID].astype(str)) - set(design.X.index))
    if unscored:
        print(f"[radfuse] score: {len(unscored)} case(s) have no feature row and are not scored: {unscored[:10]} "
              f"(reasons in {out / 'extract'}/*/failures.csv)", flush=True)
    if design.X.empty:
        raise ScoreError(f"no case of {path} could be scored: every ROI failed extraction (see {out / 'extract'})")
    scored = predict(study, design, feature_ranges(study))
    labels = frame.set_index(frame[mf.CASE_ID].astype(str))[mf.LABEL]
    scored.insert(3, mf.LABEL, scored[KEY_COLUMN].map(labels))
    artifacts.write_csv(out / PREDICTIONS_CSV, scored)
    artifacts.write_parquet(out / PREDICTIONS_PARQUET, scored)
    artifacts.write_provenance(out, inputs)
    return scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="radfuse score", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="manifest CSV of the new cases (label column optional)")
    parser.add_argument("--study", type=Path, required=True,
                        help="a finished fuse run folder (<paths.out>/fuse/<run>) or a folder from radfuse export")
    parser.add_argument("--out", type=Path, required=True, help="a new folder outside the study")
    args = parser.parse_args(argv)
    try:
        scored = score_manifest(args.manifest, args.study, args.out)
    except (ScoreError, StudyError, ManifestError, ManifestInvalid, FileNotFoundError, ValueError,
            RunFolderLocked) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    warned = scored.loc[scored["warnings"] != "", KEY_COLUMN].nunique()
    print(f"[radfuse] score: {scored[KEY_COLUMN].nunique()} case(s) x {scored.feature_set.nunique()} feature set(s) "
          f"-> {args.out / PREDICTIONS_CSV}; {warned} case(s) with warnings (column 'warnings')")
    return 0


COMMANDS = {"score": "radfuse.score", "export": "radfuse.export", "predict": "radfuse.predict"}


def cli(argv: list[str] | None = None) -> int:
    """The `radfuse` console script: `radfuse score|export|predict ...` runs `python -m radfuse.<command> ...`."""
    import importlib

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: radfuse {{{','.join(COMMANDS)}}} ...  (radfuse <command> --help)", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
