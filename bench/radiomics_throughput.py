"""Radiomics throughput: radfuse (1 and 2 workers, then a warm rerun) vs PyRadiomics' own batch command line.

    PYTHONPATH=src python bench/radiomics_throughput.py [--params conf/radiomics/wang2025.yaml] [--rois 6]
        [--source demo|spine] [--jobs 1 2] [--rounds 3] [--backend numpy|torch] [--out bench/RESULTS.md]

Both sides run as fresh processes on the same ROIs with the same params file; wall time includes interpreter
start and imports. Each round runs the tools interleaved (PyRadiomics, radfuse cold, per worker count) and the
table keeps each one's minimum over the rounds (the machine is shared). The warm rerun is the same radfuse
command again (same cache, same output folder); its "extraction call" time is `extract_radiomics` alone, after
the params file is loaded, against the cold run's same call.
PyRadiomics' CLI (`pyradiomics CASES.csv --param P --jobs N`) runs with radfuse's SciPy shim
installed first: on SciPy >= 1.17 it would otherwise drop LBP3D silently and compute 279 features fewer.
Also the CPU seconds (user + sys of each tool's processes, least over the rounds): on the shared machine the wall
ratio moves with the load, the CPU ratio much less. Prints a markdown section (and appends it to --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PYRADIOMICS_CLI = """
import sys
from radfuse.extract._compat import legacy_sph_harm_in_scipy
from radiomics.scripts import parse_args
sys.argv[0] = "pyradiomics"
with legacy_sph_harm_in_scipy():  # LBP3D on SciPy >= 1.17
    code = parse_args()
sys.exit(code)
"""
RADFUSE_RUN = """
import sys
from radfuse.extract.params import load_params
from radfuse.extract.radiomics import ExtractOptions
from radfuse.extract.radiomics_run import extract_radiomics
from radfuse.extract.runner import RoiSpec
import csv
import time
with open(sys.argv[1], newline="", encoding="utf-8") as handle:
    cases = list(csv.DictReader(handle))
rois = [RoiSpec(f"r{i}", r["Image"], r["Mask"], int(r["Label"])) for i, r in enumerate(cases)]
params = load_params(sys.argv[2])
start = time.perf_counter()
extract_radiomics(rois, params, sys.argv[3], sys.argv[4], workers=int(sys.argv[5]), progress=False,
                  options=ExtractOptions(backend=sys.argv[6]))
print(time.perf_counter() - start)
"""


def demo_cases(n: int, folder: Path) -> pd.DataFrame:
    from radfuse.data.demo import make_cohort  # lands with the demo cohort
    from radfuse.data.manifest import read_manifest

    frame = read_manifest(make_cohort(folder / "demo", n_patients=max(4, n), seed=0)).head(n)
    labels = frame["mask_label"].fillna(1).astype(int) if "mask_label" in frame else 1
    return pd.DataFrame({"Image": frame["image"], "Mask": frame["mask"], "Label": labels})


def spine_cases(n: int) -> pd.DataFrame:
    ct, bodies = SHARED / "spine-ct" / "ct.nii.gz", SHARED / "spine-ct" / "vertebral_bodies.nii.gz"
    return pd.DataFrame({"Image": str(ct), "Mask": str(bodies), "Label": list(range(20, 25))[:n]})


CPU: dict[tuple[str, int], float] = {}  # (tool, workers): least CPU seconds (user + sys) of a run over the rounds


def timed(command: list[str], tool: tuple[str, int] | None = None) -> tuple[float, str]:
    """(wall seconds, stdout); the run's CPU seconds (its processes and their children) go to CPU[tool]."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, check=True, env=env, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if tool is not None:
        CPU[tool] = min(cpu, CPU.get(tool, float("inf")))
    return wall, done.stdout


def pyradiomics_cli(cases: Path, params: Path, jobs: int, out: Path) -> float:
    return timed([sys.executable, "-c", PYRADIOMICS_CLI, str(cases), "--param", str(params), "--jobs", str(jobs),
                  "--format", "csv", "--out", str(out), "--verbosity", "1"], ("pyradiomics CLI", jobs))[0]


def radfuse_run(cases: Path, params: Path, workers: int, cache: Path, out: Path,
                cold: bool = True, backend: str = "numpy") -> tuple[float, float]:
    """(process wall time, time inside the extraction call: no interpreter start, no imports)."""
    wall, stdout = timed([sys.executable, "-c", RADFUSE_RUN, str(cases), str(params), str(cache), str(out),
                          str(workers), backend], ("radfuse", workers) if cold else None)
    return wall, float(stdout.strip().splitlines()[-1])


def largest_relative_difference(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[float, str, int, dict]:
    """Max |a-b|/|b| over every feature of every ROI (rows in CASES order); also the feature count compared and
    the max per feature class ({class: (max relative difference, feature)})."""
    features = [c for c in theirs.columns if not c.startswith("diagnostics_") and c not in ("Image", "Mask", "Label")]
    mine = ours.drop(columns="case_id").rename(columns=lambda c: c.removeprefix("rad__"))
    assert sorted(mine.columns) == sorted(features), "radfuse and PyRadiomics computed different feature sets"
    a, b = mine[features].to_numpy(float), theirs[features].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(a == b, 0.0, np.abs(a - b) / np.abs(b))
    worst = np.unravel_index(np.nanargmax(relative), relative.shape)
    per_feature = np.nanmax(relative, axis=0)
    per_class: dict[str, tuple[float, str]] = {}
    for j, name in enumerate(features):  # <image>_<class>_<feature>
        feature_class = name.split("_")[-2]
        if per_feature[j] >= per_class.get(feature_class, (-1.0, ""))[0]:
            per_class[feature_class] = (float(per_feature[j]), name)
    return float(relative[worst]), features[worst[1]], len(features), per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "conf" / "radiomics" / "wang2025.yaml")
    parser.add_argument("--rois", type=int, default=6)
    parser.add_argument("--source", choices=["demo", "spine"], default="demo")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backend", choices=["numpy", "torch"], default="numpy",
                        help="radfuse's extract.backend (torch: GLCM on CUDA when present)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radfuse-bench-"))
    cases = demo_cases(args.rois, work) if args.source == "demo" else spine_cases(args.rois)
    cases_csv = work / "CASES.csv"
    cases.to_csv(cases_csv, index=False)
    n = len(cases)
    load_before = os.getloadavg()[0]
    best, tables = {}, {}
    for round_ in range(args.rounds):
        for jobs in args.jobs:
            theirs = work / f"pyradiomics-{jobs}-{round_}.csv"  # the CLI appends to an existing file
            seconds = pyradiomics_cli(cases_csv, args.params, jobs, theirs)
            best[("pyradiomics CLI", jobs)] = min(seconds, best.get(("pyradiomics CLI", jobs), float("inf")))
            cache, out = work / f"cache-{jobs}-{round_}", work / f"radfuse-{jobs}"
            seconds, call = radfuse_run(cases_csv, args.params, jobs, cache, out, backend=args.backend)
            if seconds < best.get(("radfuse", jobs), (float("inf"),))[0]:
                best[("radfuse", jobs)] = (seconds, call)
            tables[jobs] = (pd.read_parquet(out / "radiomics.parquet"), pd.read_csv(theirs))
    rows = [(tool, jobs, best[(tool, jobs)] if tool != "radfuse" else best[(tool, jobs)][0])
            for jobs in args.jobs for tool in ("pyradiomics CLI", "radfuse")]
    last = args.jobs[-1]
    warm_wall, warm = radfuse_run(cases_csv, args.params, last, work / f"cache-{last}-{args.rounds - 1}",
                                  work / f"radfuse-{last}", cold=False, backend=args.backend)
    cold_call = best[("radfuse", last)][1]
    worst, feature, n_features, per_class = largest_relative_difference(*tables[last])
    text = report(args, n, n_features, rows, (warm_wall, warm, cold_call), worst, feature)
    text += ("| workers | CPU s pyradiomics CLI | CPU s radfuse | radfuse / pyradiomics by CPU time |\n"
             "|---|---|---|---|\n")
    text += "".join(f"| {jobs} | {CPU[('pyradiomics CLI', jobs)]:.1f} | {CPU[('radfuse', jobs)]:.1f} | "
                    f"{CPU[('pyradiomics CLI', jobs)] / CPU[('radfuse', jobs)]:.2f}x |\n" for jobs in args.jobs)
    text += "\n| feature class | largest relative difference radfuse vs PyRadiomics CLI | feature |\n|---|---|---|\n"
    text += "".join(f"| {name} | {value:.2e} | {where} |\n" for name, (value, where) in sorted(per_class.items()))
    text += "\n"
    text += f"- 1-minute load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}\n"
    print(text)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(text + "\n")


def report(args, n, n_features, rows, warm, worst, feature) -> str:  # noqa: ANN001 - bench formatting
    speed = {(tool, jobs): n / s for tool, jobs, s in rows}
    lines = [f"### {args.params.name}, {n} ROIs ({args.source}), {n_features} features per ROI",
             "", f"`PYTHONPATH=src python bench/radiomics_throughput.py --params {args.params} "
                 f"--rois {args.rois} --source {args.source} --jobs {' '.join(map(str, args.jobs))} "
                 f"--rounds {args.rounds}{' --backend torch' if args.backend == 'torch' else ''}` "
                 f"(min of {args.rounds} interleaved rounds) on {platform.node()} "
                 f"({os.cpu_count()} cores, shared), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "| tool | workers | wall s | ROIs/s | radfuse / pyradiomics |", "|---|---|---|---|---|"]
    for tool, jobs, seconds in rows:
        ratio = speed[("radfuse", jobs)] / speed[("pyradiomics CLI", jobs)]
        lines.append(f"| {tool} | {jobs} | {seconds:.1f} | {n / seconds:.3f} | "
                     f"{f'{ratio:.2f}x' if tool == 'radfuse' else ''} |")
    first, last = args.jobs[0], args.jobs[-1]
    scaling = speed[("radfuse", last)] / speed[("radfuse", first)] / (last / first)
    cold = dict(((t, j), s) for t, j, s in rows)[("radfuse", last)]
    warm_wall, warm_call, cold_call = warm
    lines += [f"| radfuse warm rerun | {last} | {warm_wall:.2f} | {n / warm_wall:.2f} | {cold / warm_wall:.0f}x "
              f"faster than cold (process); extraction call {warm_call * 1000:.1f} ms vs cold {cold_call:.2f} s: "
              f"{cold_call / warm_call:.0f}x |",
              "", f"- largest relative difference radfuse vs PyRadiomics CLI: {worst:.2e} ({feature})",
              f"- radfuse scaling {first} -> {last} workers: {scaling:.2f} of linear", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
