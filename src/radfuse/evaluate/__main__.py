"""`python -m radfuse.evaluate PRED.parquet [--manifest M] [--out DIR]`: the report of any predictions table."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from radfuse.artifacts import PROB_PREFIX
from radfuse.data.manifest import read_manifest
from radfuse.evaluate.report import build_report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m radfuse.evaluate", description=__doc__)
    parser.add_argument("predictions", type=Path, help="predictions.parquet (or .csv) in the radfuse schema")
    parser.add_argument("--manifest", type=Path, help="manifest CSV: Table 1 and the clinical nomogram")
    parser.add_argument("--out", type=Path, help="output folder (default: the predictions' folder)")
    parser.add_argument("--clinical", nargs="*", default=None,
                        help="clinical columns of the manifest (default: every non-contract column)")
    parser.add_argument("--classes", nargs="*", help="class order (default: the prob__ columns' order)")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--recalibration", choices=["platt", "isotonic"], help="also show recalibrated curves")
    return parser.parse_args(argv)


CONTRACT_COLUMNS = {"case_id", "patient_id", "image", "mask", "mask_label", "mask2", "label", "site", "cohort"}


def main(argv=None) -> Path:
    args = parse_args(argv)
    if not args.predictions.is_file():
        raise SystemExit(f"{args.predictions} does not exist: pass the path of a predictions.parquet")
    reader = pd.read_csv if args.predictions.suffix == ".csv" else pd.read_parquet
    predictions = reader(args.predictions)
    classes = args.classes or [c[len(PROB_PREFIX):] for c in predictions if c.startswith(PROB_PREFIX)]
    manifest = read_manifest(args.manifest) if args.manifest else None
    clinical = args.clinical
    if clinical is None:
        clinical = [c for c in manifest.columns if c not in CONTRACT_COLUMNS] if manifest is not None else []
    extras = {"n_resamples": args.n_resamples, "config": {"recalibration": args.recalibration,
                                                           "predictions": str(args.predictions)}}
    report = build_report(args.out or args.predictions.parent, predictions, classes=classes, manifest=manifest,
                          clinical_columns=clinical, extras=extras)
    print(report)
    return report


if __name__ == "__main__":
    main()
