"""extract stage: manifest -> radiomics.parquet, radiomics_diagnostics.parquet, icc.parquet, failures.csv
(+ deep_<layer>.parquet) under <out>/extract/<run>/, with config.yaml and provenance.json beside them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from radfuse import artifacts
from radfuse.data import manifest as mf
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import ExtractOptions
from radfuse.extract.radiomics_run import extract_radiomics, rois_from_manifest

log = logging.getLogger(__name__)


class ExtractionFailed(RuntimeError):
    """Raised at the end of a run with failed ROIs when `extract.fail_on_error` is set."""


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the stage; returns a small summary (counts and the output folder)."""
    folder = artifacts.extract_dir(cfg.out, cfg.run)
    manifest_path = Path(cfg.manifest) if cfg.manifest else Path(cfg.out) / "demo" / "manifest.csv"
    frame = mf.read_manifest(manifest_path)
    if cfg.extract.validate:
        _validate(frame, str(manifest_path))
    params_source = cfg.extract.params_file or OmegaConf.to_container(cfg.radiomics, resolve=True)
    params = load_params(params_source)
    result = extract_radiomics(
        rois_from_manifest(frame), params, artifacts.cache_dir(cfg.out) / "radiomics", folder,
        workers=int(cfg.extract.workers), executor=cfg.extract.executor, scheduler=cfg.extract.scheduler,
        options=ExtractOptions(crop=bool(cfg.extract.crop), fast_mcc=bool(cfg.extract.fast_mcc),
                               retry_failed=bool(cfg.extract.retry_failed)),
        progress=bool(cfg.extract.progress))
    summary = {"folder": str(folder), "rows": result.n_rows, "failures": len(result.failures),
               "computed": result.summary.count("computed"), "cached": result.summary.count("cached")}
    if cfg.extract.deep.source:
        from radfuse.stages.extract_deep import run_deep

        summary["deep"] = str(run_deep(cfg, frame, folder))
    artifacts.write_text(folder / artifacts.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    artifacts.write_json(folder / "radiomics_params.json", params)
    artifacts.write_provenance(folder, {"manifest": manifest_path, **_params_file(cfg)})
    log.info("extract: %s", summary)
    if cfg.extract.fail_on_error and len(result.failures):
        raise ExtractionFailed(f"{len(result.failures)} ROI(s) failed; reasons in {folder / artifacts.FAILURES_TABLE}")
    return summary


def _params_file(cfg: DictConfig) -> dict[str, str]:
    return {"radiomics_params": cfg.extract.params_file} if cfg.extract.params_file else {}


def _validate(frame, manifest_file: str) -> None:
    """Identity problems (ids, cohorts) stop the run; a bad row is warned here and recorded as a failure later."""
    from radfuse.data.validate import ManifestInvalid, validate_manifest

    problems = validate_manifest(frame, n_folds=1, manifest_file=manifest_file)
    fatal = [p for p in problems if p.column in (mf.CASE_ID, mf.PATIENT_ID, mf.COHORT)]
    for problem in problems:
        if problem not in fatal:
            log.warning("manifest: %s", problem)
    if fatal:
        raise ManifestInvalid(fatal, manifest_file)
