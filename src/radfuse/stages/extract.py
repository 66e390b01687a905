"""extract stage: manifest -> radiomics.parquet, radiomics_diagnostics.parquet, icc.parquet, failures.csv,
deep_<layer>.parquet and deep_crossfit.parquet under <out>/extract/<run>/, with config.yaml and provenance.json
beside them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.data import manifest as mf
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import ExtractOptions
from radfuse.extract.radiomics_run import extract_radiomics, rois_from_manifest
from radfuse.stages.common import load_cohort, log_lightning_once, read_cohort_frame, save_run_config

log = logging.getLogger(__name__)


class ExtractionFailed(RuntimeError):
    """Raised at the end of a run with failed ROIs when `extract.fail_on_error` is set."""


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the stage; returns a small summary (counts and the output folder)."""
    folder = artifacts.extract_dir(cfg.paths.out, cfg.run)
    frame, path = _manifest(cfg)
    params = load_params(cfg.extract.params_file or OmegaConf.to_container(cfg.radiomics, resolve=True))
    print(f"[radfuse] extract: radiomics of {len(frame)} ROIs ({len(params['imageType'])} image types) "
          f"-> {folder}", flush=True)
    result = extract_radiomics(
        rois_from_manifest(frame), params, Path(cfg.paths.cache) / "radiomics", folder,
        workers=int(cfg.extract.workers), executor=cfg.extract.executor, scheduler=cfg.extract.scheduler,
        options=ExtractOptions(crop=bool(cfg.extract.crop), fast_glcm=bool(cfg.extract.fast_glcm),
                               retry_failed=bool(cfg.extract.retry_failed),
                               resample_masks=bool(cfg.data.get("resample_masks", False))),
        progress=bool(cfg.extract.progress))
    summary = {"folder": str(folder), "rows": result.n_rows, "failures": len(result.failures),
               "computed": result.summary.count("computed"), "cached": result.summary.count("cached")}
    print(f"[radfuse] extract: radiomics {summary}", flush=True)
    if cfg.extract.deep.source or cfg.extract.deep.crossfit.train_runs:
        from radfuse.stages.extract_deep import run_crossfit, run_deep  # imports lightning

        log_lightning_once()
        cohort = load_cohort(cfg)
        if cfg.extract.deep.source:
            summary["deep"] = str(run_deep(cfg, folder, cohort))
        if cfg.extract.deep.crossfit.train_runs:
            summary["crossfit"] = str(run_crossfit(cfg, cohort))
    artifacts.write_json(folder / "radiomics_params.json", params)
    inputs = {"manifest": path, **({"radiomics_params": cfg.extract.params_file} if cfg.extract.params_file else {})}
    save_run_config(cfg, folder, inputs)
    if cfg.extract.fail_on_error and len(result.failures):
        raise ExtractionFailed(f"{len(result.failures)} ROI(s) failed; reasons in {folder / artifacts.FAILURES_TABLE}")
    return summary


def _manifest(cfg: DictConfig) -> tuple[pd.DataFrame, Path]:
    """The manifest as training sees it (component expansion included), validated leniently.

    Identity problems (ids, cohorts) stop the run; a row problem (unreadable file, empty ROI) is only warned
    here: extraction records it in failures.csv with its reason and goes on with the other ROIs.
    """
    from radfuse.data.validate import ManifestInvalid, validate_manifest

    frame, path = read_cohort_frame(cfg)
    problems = validate_manifest(frame, n_folds=1, resample_masks=bool(cfg.data.get("resample_masks", False)),
                                 manifest_file=str(path))
    fatal = [p for p in problems if p.column in (mf.CASE_ID, mf.PATIENT_ID, mf.COHORT)]
    for problem in problems:
        if problem not in fatal:
            log.warning("manifest: %s", problem)
    if fatal:
        raise ManifestInvalid(fatal, str(path))
    return frame, path
