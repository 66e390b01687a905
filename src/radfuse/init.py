"""`python -m radfuse.init STUDY_DIR [--manifest M] [--classes 0 1] [--clinical age:numeric ...]`: a study in one file.

Writes `STUDY_DIR/experiment/study.yaml` (a commented study preset: your manifest, classes, clinical columns, output
folder and the stage settings your data call for) and, without `--manifest`, a manifest template (`manifest.csv`
with its header, and `MANIFEST.md` saying what each column holds). Then it prints the commands to run: every stage
takes `--config-dir STUDY_DIR experiment=study` and nothing else. The study picks `data=study` (conf/data/study
.yaml), so none of the demo's classes or clinical columns reach it. With `--manifest`, what the manifest shows is
used: its classes, its clinical columns and their kinds, one site -> no ComBat, no `mask2` -> no ICC filter, folds
no more than the smallest class has training patients.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radfuse.data.manifest import (CASE_ID, COHORT, IMAGE, LABEL, MASK, MASK2, MASK_LABEL, OPTIONAL_COLUMNS,
                                   PATIENT_ID, REQUIRED_COLUMNS, SITE, ManifestError, is_missing_token, read_manifest)
from radfuse.stages.study import CONF_DIR

STUDY_FILE = Path("experiment") / "study.yaml"
INTERNAL_FRACTION = 0.2  # data.split.internal_fraction the study file writes
NOT_CLINICAL = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS) | {"roi"}
COLUMN_HELP = {
    CASE_ID: "unique id of the ROI, e.g. P012_L1 (letters, digits, '-', '_')",
    PATIENT_ID: "the patient: all ROIs of a patient go to the same fold and cohort",
    IMAGE: "the CT: a NIfTI / NRRD / MHA file or a DICOM series folder, relative to this file's folder",
    MASK: "the segmentation on the image's grid (a label map or a binary mask)",
    MASK_LABEL: "which label of a multi-label mask is this ROI (a number); empty for a binary mask",
    LABEL: "the class of the ROI, one of data.classes",
    SITE: "centre / scanner (the ComBat batch); optional",
    COHORT: "train / internal / external / prospective; empty = split automatically (8:2 train / internal)",
    MASK2: "a second reader's mask of the same ROI, for the ICC filter; optional",
}


@dataclass
class Study:
    folder: Path
    manifest: Path
    classes: list[str]
    clinical: dict[str, str] = field(default_factory=dict)
    n_folds: int = 5
    sites: int = 0            # distinct sites in the manifest (0: unknown, no manifest yet)
    second_reader: bool = False


def from_manifest(folder: Path, manifest: Path, classes: list[str] | None, clinical: dict[str, str] | None,
                  n_folds: int | None) -> Study:
    """The study a manifest calls for; what the user names wins."""
    frame = read_manifest(manifest)
    labels = [str(v) for v in frame[LABEL].dropna().astype(str).str.replace(r"\.0$", "", regex=True).unique()]
    found = classes or sorted(labels, key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit()
                                                                               else 0, v))
    if clinical is None:
        clinical = {c: _kind(frame[c]) for c in frame.columns if c not in NOT_CLINICAL and not c.startswith("_")}
    train = frame[frame[COHORT] == "train"] if COHORT in frame.columns and (frame[COHORT] == "train").any() else frame
    per_class = train.groupby(train[LABEL].astype(str).str.replace(r"\.0$", "", regex=True))[PATIENT_ID].nunique()
    smallest = int(per_class.min()) if len(per_class) else 2
    if train is frame:  # patients without a cohort: the automatic split keeps 80 % for training
        smallest = int(smallest * (1 - INTERNAL_FRACTION))
    sites = int(frame[SITE].nunique()) if SITE in frame.columns else 1
    second = MASK2 in frame.columns and frame[MASK2].notna().any()
    return Study(folder, manifest.resolve(), found, clinical, n_folds or max(2, min(5, smallest)), sites, second)


def _kind(values: pd.Series) -> str:
    present = values[~values.map(is_missing_token)]
    numeric = pd.to_numeric(present, errors="coerce").notna().all() and len(present) > 0
    return "numeric" if numeric else "categorical"


def study_yaml(study: Study) -> str:
    """The commented study preset."""
    q = _quote
    clinical = ("{" + ", ".join(f"{name}: {kind}" for name, kind in study.clinical.items()) + "}") if study.clinical \
        else "null"
    one_site = study.sites == 1
    lines = [
        "# @package _global_",
        f"# The study in {study.folder}: every stage runs on it with  --config-dir {study.folder} experiment=study",
        "# (python -m radfuse.init printed the commands). Change any key here, or once on a command line (key=value).",
        "# Nothing of the demo applies: data=study (conf/data/study.yaml) has no classes or clinical columns but these.",
        "study:",
        f"  name: {q(study.folder.name)}",
        "  groups:                      # config-group choices per stage (radfuse.stages.study)",
        "    prepare: {data: study}",
        "    train: {data: study, backbone: scratch}       # imagenet / radimagenet / medicalnet: local weights files",
        "    extract: {data: study, radiomics: fast}       # liu2025 / wang2025: the papers' full feature sets",
        "    fuse: {data: study}",
    ]
    if not study.clinical:
        lines += ["  overrides:                   # plain overrides per stage: no clinical columns, so no clinical set",
                  "    fuse: ['~feature_sets', '+feature_sets={rad: [rad], deep: [deep], fused: [rad, deep]}']"]
    lines += [
        "paths:",
        f"  out: {q(study.folder / 'outputs')}     # splits.json, cache/, train/, extract/, fuse/",
        "data:",
        f"  manifest: {q(study.manifest)}",
        f"  classes: [{', '.join(q(c) for c in study.classes)}]     # as written in the label column, in order",
        f"  clinical: {clinical}     # manifest columns used as clinical features: numeric | categorical",
        "  modality: ct                 # ct: images must be in HU; other: MR, PET, normalised CT",
        "  split:",
        "    seed: 0",
        f"    internal_fraction: {INTERNAL_FRACTION}     # patients without a cohort: train / internal 8:2",
        f"    n_folds: {study.n_folds}                 # CV folds (each class needs that many training patients)",
        "  mode: 2d                     # 2d | 2.5d | 3d crops",
        "  size: 64                     # crop side in pixels / voxels",
        "  margin: 0                    # voxels added around each ROI's box",
        "  window: bone_w1500_l500      # HU window: bone_w1200_l500 | soft_w400_l40",
        "model:",
        "  arch: resnet18               # resnet18/34/50 (2D, 3D), shufflenet_v2_x1_0",
        "trainer:",
        "  max_epochs: 20",
        "run: main                      # train/main, extract/main, fuse/main under paths.out",
        "extract_run: main",
        "extract:",
        "  deep:",
        "    train_run: main            # the CNN whose embeddings are extracted",
        "    crossfit:",
        "      train_runs: cv           # the fold CNNs cv0, cv1, ... (train.py -m data.fold=... 'run=cv${data.fold}')",
        "report:",
        "  train_run: main              # Grad-CAM from this CNN only when no block is cross-fitted",
        "blocks:",
        "  rad:",
        "    combat: null               # one site: nothing to harmonise" if one_site else
        "    combat:                    # ComBat harmonises radiomics across the manifest's sites",
    ]
    if not one_site:
        lines += ["      site_column: meta__site"]
    lines += ["    icc:" if study.second_reader else
              "    icc: null                  # no second reader (mask2): no ICC filter"]
    if study.second_reader:
        lines += ["      threshold: 0.8           # keep features with ICC(2,1) >= 0.8 between the readers"]
    return "\n".join(lines) + "\n"


def _quote(value: object) -> str:
    text = str(value)
    return text if text.replace("_", "").replace("-", "").replace("/", "").replace(".", "").isalnum() \
        and not text.replace(".", "").isdigit() else "'" + text.replace("'", "''") + "'"


def manifest_template(study: Study) -> tuple[str, str]:
    """(header line of manifest.csv, MANIFEST.md text)."""
    columns = [CASE_ID, PATIENT_ID, IMAGE, MASK, MASK_LABEL, LABEL, SITE, COHORT, *study.clinical]
    doc = ["# The manifest", "", "One row per ROI; paths relative to this folder. `python -m radfuse.data.build` "
           "writes it from a folder tree, TotalSegmentator, VerSe, a PyRadiomics CSV, DICOM-SEG or RTSTRUCT.", "",
           "| column | what it holds |", "|---|---|"]
    doc += [f"| `{c}` | {COLUMN_HELP.get(c, f'clinical: {study.clinical.get(c)}')} |" for c in columns]
    return ",".join(columns) + "\n", "\n".join(doc) + "\n"


def commands(study: Study) -> list[str]:
    repo = CONF_DIR.parent
    study_args = f"--config-dir {shlex.quote(str(study.folder))} experiment=study"
    folds = ",".join(str(k) for k in range(study.n_folds))
    return [f"python -m radfuse.data.validate {study_args}",
            f"python -m radfuse.stages.prepare {study_args}",
            f"python {repo / 'train.py'} {study_args}",
            f"python {repo / 'train.py'} -m {study_args} data.fold={folds} 'run=cv${{data.fold}}'",
            f"python {repo / 'extract.py'} {study_args}",
            f"python {repo / 'fuse.py'} {study_args}"]


def write_study(study: Study, force: bool = False, template: bool = False) -> list[Path]:
    from radfuse.artifacts import atomic_path

    target = study.folder / STUDY_FILE
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists: edit it, or pass --force to write it again")
    files = {target: study_yaml(study)}
    if template:
        header, doc = manifest_template(study)
        if not study.manifest.exists():
            files[study.manifest] = header
        files[study.folder / "MANIFEST.md"] = doc
    for path, text in files.items():
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m radfuse.init", description=__doc__.split("\n")[0])
    p.add_argument("study_dir", type=Path)
    p.add_argument("--manifest", type=Path, help="an existing manifest (python -m radfuse.data.build wrote it)")
    p.add_argument("--classes", nargs="*", help="class labels in order (default: the manifest's; without one: 0 1)")
    p.add_argument("--clinical", nargs="*", help="clinical columns name:numeric|categorical (default: the manifest's "
                                                 "other columns)")
    p.add_argument("--folds", type=int, help="CV folds (default: 5, fewer when a class has fewer patients)")
    p.add_argument("--force", action="store_true", help="write experiment/study.yaml again")
    args = p.parse_args(argv)
    from radfuse.data.validate import parse_clinical

    folder = args.study_dir.resolve()
    clinical = parse_clinical(args.clinical) if args.clinical is not None else None
    try:
        if args.manifest is not None:
            study = from_manifest(folder, args.manifest, args.classes, clinical, args.folds)
        else:
            study = Study(folder, folder / "manifest.csv", args.classes or ["0", "1"], clinical or {}, args.folds or 5)
        written = write_study(study, args.force, template=args.manifest is None)
    except (ManifestError, FileExistsError, ValueError) as err:
        print(f"[radfuse] error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(map(str, written)))
    if args.manifest is None:
        print(f"fill {study.manifest} (one row per ROI; MANIFEST.md says what each column holds), then run:")
    else:
        print("run, from any folder:")
    print("\n".join("  " + c for c in commands(study)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
