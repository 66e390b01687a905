"""Time the built-in demo cohort: default size (about 300 ROIs), 2 processes, into a temporary folder.

    python bench/demo_cohort.py [--patients N] [--processes P] [--repeats R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from radfuse.data import demo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=demo.DEFAULT_PATIENTS)
    parser.add_argument("--processes", type=int, default=demo.MAX_PROCESSES)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            path = demo.make_cohort(out, args.patients, seed=repeat, processes=args.processes)
            seconds = time.perf_counter() - start
            size_mb = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1e6
            rois = len(pd.read_csv(path))
            print(f"seed {repeat}: {rois} ROIs from {args.patients} patients, {args.processes} processes: "
                  f"{seconds:.1f} s ({rois / seconds:.1f} ROIs/s), {size_mb:.0f} MB")


if __name__ == "__main__":
    main()
