"""One place for every artefact's path, and atomic writers for all of them.

Every stage writes through these helpers so that an interrupted run never leaves a half-written file: the data
go to a temporary file in the same folder, which is then renamed over the target (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pandas is 0.5-3 s of imports: radiomics workers, which write JSON only, never import it
    import pandas as pd

# ---------------------------------------------------------------------------------------------- layout
SPLITS_FILE = "splits.json"


def splits_path(out: str | Path) -> Path:
    return Path(out) / SPLITS_FILE


def train_dir(out: str | Path, run: str) -> Path:
    """`<out>/train/<run>/{best.ckpt, last.ckpt, config.yaml, metrics.json}`."""
    return Path(out) / "train" / run


def extract_dir(out: str | Path, run: str) -> Path:
    """`<out>/extract/<run>/{deep_<layer>.parquet, radiomics.parquet, icc.parquet, failures.csv, config.yaml}`."""
    return Path(out) / "extract" / run


def fuse_dir(out: str | Path, run: str) -> Path:
    """`<out>/fuse/<run>/{model.joblib, predictions.parquet, metrics.json, delong.csv, report.html, figures/}`."""
    return Path(out) / "fuse" / run


def deep_table_name(layer: str) -> str:
    """`deep_<layer>.parquet`; characters other than letters, digits, `_`, `.` and `-` (a slash, a space) become
    `_`, so any module name (`layer3.1.conv2`) gives a plain file name inside the extract folder."""
    return f"deep_{re.sub(r'[^A-Za-z0-9_.-]', '_', layer)}.parquet"


def deep_tables_in(folder: str | Path) -> list[str]:
    """File names of the deep tables (`deep_*.parquet`) an extract run wrote into `folder`, sorted."""
    folder = Path(folder)
    return sorted(p.name for p in folder.glob("deep_*.parquet")) if folder.is_dir() else []


CROSSFIT_TABLE = deep_table_name("crossfit")  # out-of-fold CNN scores (radfuse.extract.crossfit)
DEEP_SOURCES_FILE = "deep_sources.json"  # per deep table: the checkpoint(s) it came from and what chose them

# train run folder
BEST_CHECKPOINT = "best.ckpt"  # the epoch of the best validation macro AUC (conf/callbacks: filename best)
LAST_CHECKPOINT = "last.ckpt"  # the true last epoch (radfuse.models.checkpoints.LastEpochCheckpoint)


RADIOMICS_TABLE = "radiomics.parquet"
RADIOMICS_DIAGNOSTICS_TABLE = "radiomics_diagnostics.parquet"
ICC_TABLE = "icc.parquet"              # inter-observer: mask vs mask2 (another reader)
ICC_INTRA_TABLE = "icc_intra.parquet"  # intra-observer: mask vs mask_repeat (the same reader again)
GREY_LEVELS_TABLE = "grey_levels.csv"  # per image type: grey levels the ROIs get after discretisation
FAILURES_TABLE = "failures.csv"
RADIOMICS_PARAMS_FILE = "radiomics_params.json"  # the params the extract run used, as PyRadiomics read them
PREDICTIONS_TABLE = "predictions.parquet"
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
# fuse run folder (radfuse.evaluate writes the report's files)
CV_RESULTS_FILE = "cv_results.csv"
REPORT_FILE = "report.html"
DELONG_TABLE = "delong.csv"
SHAP_TABLE = "shap_values.parquet"

DEEP_PREFIX = "deep__"
RAD_PREFIX = "rad__"
KEY_COLUMN = "case_id"


# ---------------------------------------------------------------------------------------------- atomic IO
def _new_temporary(target: Path) -> Path:
    """An empty, new file beside `target` with the permissions of any new file (0666 less the process's umask,
    applied by the OS when the file is created: mkstemp's 0600 would make outputs private, and reading the
    umask means setting it, process-wide)."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {target}")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`, on failure delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temporary(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | Path, obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet(target: str | Path, frame: pd.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(target)


def write_csv(target: str | Path, frame: pd.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(target)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


# ---------------------------------------------------------------------------------------------- provenance
PROVENANCE_PACKAGES = (
    "radfuse", "torch", "lightning", "monai", "hydra-core", "SimpleITK", "pyradiomics-bhklab", "numpy",
    "scikit-learn", "lightgbm", "xgboost-cpu", "xgboost", "shap", "pandas", "scipy",
)


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file, or of every file of a folder (a DICOM series) in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def write_provenance(folder: str | Path, inputs: dict[str, str | Path] | None = None) -> Path:
    """`provenance.json`: package versions and content hashes of the inputs that produced a folder."""
    hashes = {name: file_sha256(p) for name, p in (inputs or {}).items() if Path(p).exists()}
    return write_json(Path(folder) / PROVENANCE_FILE, {"versions": package_versions(), "inputs": hashes})


# ---------------------------------------------------------------------------------------------- predictions
# predictions.parquet (fuse writes, evaluate reads), one row per (ROI, feature_set, model, split):
#   case_id, patient_id, cohort, site, label (class name as str), pred (class name as str),
#   prob__<class> for every class in the configured class order, feature_set (rad|deep|fused|fused+clinical|...),
#   model (classifier name), split: "oof" = out-of-fold on the train cohort, "refit" = the model refit on all
#   training data applied to a cohort (train rows under "refit" are apparent performance).
PROB_PREFIX = "prob__"
PREDICTION_COLUMNS = ("case_id", "patient_id", "cohort", "site", "label", "pred", "feature_set", "model", "split")


# fuse adds radscore__<class> (radfuse.fuse.radscore): the final LASSO's linear predictor, or the classifier's
# log-odds without one; the second class only for two classes. oof rows: from the out-of-fold models.
RADSCORE_PREFIX = "radscore__"


def prob_columns(classes: list[str] | tuple[str, ...]) -> list[str]:
    return [f"{PROB_PREFIX}{c}" for c in classes]


# ---------------------------------------------------------------------------------------------- run markers
# `<run folder>/COMPLETE.json`, written last by train, extract and fuse: every file the run folder holds (hidden
# files such as the lock and temporary files aside) with its sha256. A reader refuses a folder without it; a rerun
# removes it before writing anything, so a killed rerun is never taken for a complete run (docs/runs.md).
COMPLETE_FILE = "COMPLETE.json"
MARKER_SKIP = ("wandb",)  # logger folders that change after the run (never read by a stage)
RERUN_FIXES = {
    "train": "rerun that train run (python train.py run={run} ...), or resume it with ckpt_path=last",
    "extract": "rerun that extract run (python extract.py run={run} ...)",
    "fuse": "rerun that fuse run (python fuse.py run={run} ...)",
    "score": "rerun that scoring (radfuse score NEW_MANIFEST --study RUN_DIR --out {folder})",
}


class RunIncomplete(RuntimeError):
    """A run folder without its completion marker, or whose files changed since it was written."""


def start_run(folder: str | Path) -> None:
    """Before a (re)run writes anything (its run lock held): remove the folder's completion marker, and the
    temporary files a killed run left behind (`.<name>.<random>.tmp` of `atomic_path`; no reader takes them, but
    they would pile up)."""
    folder = Path(folder)
    (folder / COMPLETE_FILE).unlink(missing_ok=True)
    for leftover in temporary_files(folder):
        leftover.unlink(missing_ok=True)


def temporary_files(folder: str | Path) -> list[Path]:
    """Temporary files of atomic writes (`.<name>...tmp`) anywhere under `folder` (logger folders aside)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(".*.tmp") if p.is_file()
                  and not any(part in MARKER_SKIP for part in p.relative_to(folder).parts))


def run_files(folder: str | Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Relative paths (posix) of the files a run folder holds, sorted; hidden files, logger folders and the
    top-level entries named in `skip` (e.g. a cache) left out."""
    folder = Path(folder)
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any(p.startswith(".") or p in MARKER_SKIP for p in parts) \
                and parts != (COMPLETE_FILE,) and parts[0] not in skip:
            found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def mark_complete(folder: str | Path, stage: str, skip: tuple[str, ...] = ()) -> Path:
    """Write `COMPLETE.json` (the run's files and their hashes): the last write of a run."""
    folder = Path(folder)
    files = {name: file_sha256(folder / name) for name in run_files(folder, skip)}
    return write_json(folder / COMPLETE_FILE, {"stage": stage, "files": files})


def read_marker(folder: str | Path) -> dict | None:
    path = Path(folder) / COMPLETE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def require_complete(folder: str | Path, stage: str, files: tuple[str | Path, ...] = ()) -> dict:
    """The marker of a finished `stage` run in `folder`; refuse a folder without one, or whose `files` (names
    inside the folder) differ from what the marker recorded."""
    folder = Path(folder)
    fix = RERUN_FIXES[stage].format(run=folder.name, folder=folder)
    marker = read_marker(folder)
    if marker is None:
        raise RunIncomplete(
            f"{stage} run folder {folder} has no {COMPLETE_FILE}: that run did not finish (killed, failed or still "
            f"running) or was written by a radfuse without run markers, so its outputs may be incomplete. Fix: {fix}")
    for name in map(str, files):
        recorded = marker.get("files", {}).get(name)
        if recorded is None:
            raise RunIncomplete(f"{folder / name} is not one of the files of the finished {stage} run in {folder} "
                                f"(written after it, or by another run). Fix: {fix}")
        if file_sha256(folder / name) != recorded:
            raise RunIncomplete(f"{folder / name} changed since the {stage} run in {folder} finished (its sha256 "
                                f"differs from {COMPLETE_FILE}): do not use it. Fix: {fix}")
    return marker


def is_run_folder(folder: str | Path, stage: str) -> bool:
    """Whether `folder` is (or was meant to be) a radfuse `stage` run folder: `<out>/<stage>/<run>`, or a folder
    holding a marker, a config.yaml or a provenance.json."""
    folder = Path(folder)
    return folder.parent.name == stage or any((folder / f).exists() for f in (COMPLETE_FILE, CONFIG_FILE,
                                                                               PROVENANCE_FILE))


def prepare_dir(out: str | Path) -> Path:
    """`<out>/prepare/{config.yaml, provenance.json}`: what the last prepare run read."""
    return Path(out) / "prepare"
