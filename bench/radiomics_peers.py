"""Radiomics side by side: radfuse, PyRadiomics' CLI and its API in a process pool, flash-radiomics, fastrad, MIRP.

    PYTHONPATH=src python bench/radiomics_peers.py --peers-python /tmp/peers/bin/python
        [--params conf/radiomics/liu2025.yaml conf/radiomics/wang2025.yaml] [--source demo spine] [--rois 24]
        [--jobs 1 2] [--rounds 1] [--out bench/RESULTS.md]

The peers are not dependencies of radfuse: they live in a separate environment made for the bench only,
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.13.0 && \
        /tmp/peers/bin/pip install pyradiomics-bhklab flash-radiomics fastrad mirp h5py scikit-learn

Every tool runs as a fresh process on the same ROIs with the same params file, one BLAS thread per process, wall
time including interpreter start and imports; in each round the tools are interleaved, and the table keeps each
tool's minimum over the rounds (the machine is shared: read ratios, not absolute times).
- PyRadiomics CLI: `pyradiomics CASES.csv --param P --jobs N`. Its parent busy-waits on a core and hands out
  cases in chunks, so at 2 workers the fair PyRadiomics baseline is its API in a plain process pool, timed too.
- flash-radiomics: its PyRadiomics-compatible extractor in the same pool. Its discretisation cache is keyed by
  numpy data pointers, which go stale when memory is reused, so it is emptied before every ROI ("cache bypassed").
- fastrad takes tensors and a fixed bin width only: PyRadiomics' own image operations load, resample and filter
  each image type, and fastrad computes the features of each filtered crop (its time includes those filters).
  With `binCount` in the params it gets the equivalent width (max - min) / binCount of each crop, not the same
  bin edges, so its texture values are expected to differ there.
- MIRP: original image only (its filters are configured differently), IBSI feature names, no values compared.
Values: every feature a tool reports under a name radfuse also reports, against PyRadiomics' CLI; a feature is
"equal" when it is within 1e-6 relative on every ROI. The table gives, per tool and feature class, features
equal / compared and the largest relative difference.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from radiomics_throughput import ROOT, demo_cases, pyradiomics_cli, radfuse_run, spine_cases  # noqa: E402

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TOLERANCE = 1e-6

# One peer process: extracts every ROI of CASES.csv with N workers and writes a CSV (one row per ROI, PyRadiomics'
# feature names where the tool has them). argv: tool cases params out jobs.
PEER_RUN = r'''
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from concurrent.futures import ProcessPoolExecutor
import logging, scipy.special
logging.getLogger("radiomics").setLevel(logging.ERROR)
if not hasattr(scipy.special, "sph_harm"):  # PyRadiomics' and flash's LBP3D need SciPy's removed legacy function
    from radfuse.extract._compat import legacy_sph_harm
    scipy.special.sph_harm = legacy_sph_harm
tool, cases_csv, params, out, jobs = sys.argv[1:6]
EXTRACTOR = None

class Uncached(dict):
    """flash's discretisation cache, never hit: every lookup misses and returns what was just computed."""
    def __contains__(self, key):
        return False
    def __setitem__(self, key, value):
        self.last = value
    def __getitem__(self, key):
        return self.last

def extractor(module):
    base = __import__(module + ".featureextractor", fromlist=["x"]).RadiomicsFeatureExtractor
    if module != "flash_radiomics":
        return base(params)
    class Bypassed(base):
        _discretization_cache = property(lambda self: self.__dict__.setdefault("_cache", Uncached()),
                                         lambda self, value: self.__dict__.update(_cache=Uncached()))
    return Bypassed(params)

def pyradiomics_like(row, module):
    global EXTRACTOR
    if EXTRACTOR is None:
        EXTRACTOR = extractor(module)
    result = EXTRACTOR.execute(row["Image"], row["Mask"], label=int(row["Label"]))
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}

def fastrad_one(row):
    import torch, SimpleITK as sitk
    from radiomics import featureextractor, imageoperations
    from fastrad import MedicalImage, Mask, FeatureSettings, FeatureExtractor
    global EXTRACTOR
    if EXTRACTOR is None:
        EXTRACTOR = featureextractor.RadiomicsFeatureExtractor(params)
    settings = dict(EXTRACTOR.settings, label=int(row["Label"]))
    image, mask = EXTRACTOR.loadImage(row["Image"], row["Mask"], None, **settings)
    box, _ = imageoperations.checkMask(image, mask, **settings)
    classes = [c for c in EXTRACTOR.enabledFeatures if c != "shape2D"]
    values = {}
    for image_type, custom in EXTRACTOR.enabledImagetypes.items():
        kwargs = dict(settings, **custom)
        for filtered, name, _ in getattr(imageoperations, "get%sImage" % image_type)(image, mask, **kwargs):
            crop, crop_mask = imageoperations.cropToTumorMask(filtered, mask, box)
            array = sitk.GetArrayFromImage(crop).astype(np.float64)
            roi = sitk.GetArrayFromImage(crop_mask) == int(row["Label"])
            width = kwargs.get("binWidth", 25.0)
            if kwargs.get("binCount"):
                width = max(float(np.ptp(array[roi])), 1e-9) / kwargs["binCount"]
            spacing = crop.GetSpacing()[::-1]
            wanted = [c for c in classes if c != "shape" or name == "original"]
            fs = FeatureSettings(feature_classes=wanted, bin_width=width, device="cpu", spacing=spacing)
            result = FeatureExtractor(fs).extract(MedicalImage(torch.tensor(array), spacing),
                                                  Mask(torch.tensor(roi.astype(np.float32)), spacing))
            for key, value in result.items():
                klass, feature = key.split(":", 1)
                values["%s_%s_%s" % (name, klass, feature)] = float(value)
    return values

def mirp_one(row):
    from mirp import extract_features
    import SimpleITK as sitk
    from radiomics import featureextractor
    global EXTRACTOR
    if EXTRACTOR is None:
        EXTRACTOR = featureextractor.RadiomicsFeatureExtractor(params)
    s = EXTRACTOR.settings
    method = "fixed_bin_number" if s.get("binCount") else "fixed_bin_size"
    n = s.get("binCount") or s.get("binWidth", 25)
    mask = sitk.ReadImage(row["Mask"]) == int(row["Label"])
    image = sitk.ReadImage(row["Image"])
    tables = extract_features(image=sitk.GetArrayFromImage(image), mask=sitk.GetArrayFromImage(mask),
                              image_voxel_spacing=image.GetSpacing()[::-1], base_discretisation_method=method,
                              base_discretisation_n_bins=n if method == "fixed_bin_number" else None,
                              base_discretisation_bin_width=n if method == "fixed_bin_size" else None,
                              image_modality="CT")
    frame = tables[0]
    return {c: float(frame[c].iloc[0]) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}

def one(row):
    if tool == "flash":
        return pyradiomics_like(row, "flash_radiomics")
    if tool == "pyradiomics-pool":
        return pyradiomics_like(row, "radiomics")
    return {"fastrad": fastrad_one, "mirp": mirp_one}[tool](row)

if __name__ == "__main__":
    rows = pd.read_csv(cases_csv).to_dict("records")
    with ProcessPoolExecutor(int(jobs)) as pool:
        results = list(pool.map(one, rows))
    pd.DataFrame(results).to_csv(out, index=False)
'''


def timed(python: str, args: list[str], log: Path) -> float:
    """Wall seconds of one peer process; its output goes to `log`."""
    env = {**os.environ, **THREADS, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        # cwd: flash-radiomics writes an HDF5 copy of every result into ./flash_radiomics_hdf5
        subprocess.run([python, *args], check=True, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent)
    return time.perf_counter() - start


def normalised(name: str) -> str:
    """A feature name without case and separators (fastrad writes snake_case): `image type|class|feature`.

    PyRadiomics' image type names (original, log-sigma-1-0-mm-3D, wavelet-LLH, lbp-3D-m1) hold no underscore."""
    image_type, klass, feature = name.split("_", 2)
    feature = re.sub(r"(\d+)th_percentile", r"\1percentile", feature.lower())
    return f"{image_type.lower()}|{klass.lower()}|{feature.replace('_', '')}"


def compare(reference: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, tuple[int, int, float]]:
    """Per feature class: (features within TOLERANCE on every ROI, features compared, largest relative difference)."""
    ours = {normalised(c): c for c in reference.columns if c.count("_") >= 2 and not c.startswith("diagnostics_")}
    mapping = {c: ours[normalised(c)] for c in theirs.columns if c.count("_") >= 2 and normalised(c) in ours}
    result: dict[str, list] = {}
    for column, ref_column in mapping.items():
        a, b = theirs[column].to_numpy(float), reference[ref_column].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1e-300))
        worst = float(np.nanmax(rel)) if np.isfinite(rel).any() else float("inf")
        worst = float("inf") if np.isnan(rel).any() else worst
        klass = ref_column.split("_")[1]
        equal, count, largest = result.get(klass, [0, 0, 0.0])
        result[klass] = [equal + int(worst <= TOLERANCE), count + 1, max(largest, worst)]
    return {k: tuple(v) for k, v in sorted(result.items())}


def run_suite(args, params: Path, source: str, work: Path) -> str:  # noqa: ANN001 - bench driver
    params = params.resolve()  # the peers run in the suite's folder
    suite = work / f"{params.stem}-{source}"
    suite.mkdir()
    cases = demo_cases(args.rois, suite) if source == "demo" else spine_cases(args.rois)
    cases_csv = suite / "CASES.csv"
    cases.to_csv(cases_csv, index=False)
    peers = ["pyradiomics-pool", "flash", "fastrad"] + (["mirp"] if args.mirp and params.stem == "liu2025" else [])
    best: dict[tuple[str, int], float] = {}
    tables: dict[str, pd.DataFrame] = {}
    for round_ in range(args.rounds):
        for jobs in args.jobs:
            tag = f"{jobs}-{round_}"
            times = {"pyradiomics CLI": pyradiomics_cli(cases_csv, params, jobs, suite / f"cli-{tag}.csv")}
            times["radfuse"] = radfuse_run(cases_csv, params, jobs, suite / f"cache-{tag}", suite / f"rf-{tag}")[0]
            for peer in peers:
                try:
                    times[peer] = timed(args.peers_python, ["-c", PEER_RUN, peer, str(cases_csv), str(params),
                                                            str(suite / f"{peer}-{tag}.csv"), str(jobs)],
                                        suite / f"{peer}-{tag}.log")
                except subprocess.CalledProcessError as error:
                    print(f"[bench] {peer} failed on {params.stem}/{source} (exit {error.returncode}, see "
                          f"{suite / f'{peer}-{tag}.log'}); left out", file=sys.stderr)
            for tool, seconds in times.items():
                best[(tool, jobs)] = min(seconds, best.get((tool, jobs), float("inf")))
            tables["pyradiomics CLI"] = pd.read_csv(suite / f"cli-{tag}.csv")
            rf = pd.read_parquet(suite / f"rf-{tag}" / "radiomics.parquet")
            tables["radfuse"] = rf.drop(columns="case_id").rename(columns=lambda c: c.removeprefix("rad__"))
            for peer in peers:
                if (suite / f"{peer}-{tag}.csv").exists():
                    tables[peer] = pd.read_csv(suite / f"{peer}-{tag}.csv")
    return report(args, params, source, len(cases), best, tables)


def report(args, params: Path, source: str, n: int, best: dict, tables: dict) -> str:  # noqa: ANN001
    reference = tables["pyradiomics CLI"]
    n_features = sum(1 for c in reference.columns if not c.startswith("diagnostics_")
                     and c not in ("Image", "Mask", "Label"))
    tools = ["radfuse", "pyradiomics CLI", "pyradiomics-pool", "flash", "fastrad", "mirp"]
    lines = [f"#### {params.name}, {n} ROIs ({source}), {n_features} PyRadiomics features per ROI", "",
             "| tool | " + " | ".join(f"{j} worker{'s' if j > 1 else ''}: wall s (radfuse speed-up)"
                                      for j in args.jobs) + " |",
             "|---|" + "---|" * len(args.jobs)]
    for tool in tools:
        if not any((tool, j) in best for j in args.jobs):
            continue
        cells = []
        for j in args.jobs:
            if (tool, j) not in best:
                cells.append("-")
                continue
            ratio = best[(tool, j)] / best[("radfuse", j)]
            cells.append(f"{best[(tool, j)]:.1f}" + ("" if tool == "radfuse" else f" ({ratio:.2f}x)"))
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines += ["", "| tool | feature class | equal to PyRadiomics (1e-6) / compared | largest relative difference |",
              "|---|---|---|---|"]
    for tool in ("radfuse", "pyradiomics-pool", "flash", "fastrad"):
        if tool not in tables:
            continue
        classes = compare(reference, tables[tool])
        for klass, (equal, count, largest) in classes.items():
            lines.append(f"| {tool} | {klass} | {equal} / {count} | {largest:.1e} |")
        total = sum(equal for equal, _, _ in classes.values())
        lines.append(f"| {tool} | all | **{total} / {n_features}** of PyRadiomics' features | |")
    return "\n".join(lines) + "\n"


def versions(python: str) -> str:
    code = ("import importlib.metadata as m\nfor p in ('pyradiomics-bhklab','flash-radiomics','fastrad','mirp',"
            "'torch','numpy','scipy'):\n    try: print(p, m.version(p))\n    except Exception: print(p, '-')")
    return ", ".join(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
                     .stdout.split("\n")[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", required=True, help="python of the bench-only environment of the peers")
    parser.add_argument("--params", type=Path, nargs="+",
                        default=[ROOT / "conf" / "radiomics" / "liu2025.yaml", ROOT / "conf" / "radiomics" /
                                 "wang2025.yaml"])
    parser.add_argument("--source", nargs="+", choices=["demo", "spine"], default=["demo", "spine"])
    parser.add_argument("--rois", type=int, default=24)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-mirp", dest="mirp", action="store_false")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radfuse-peers-"))
    load_before = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    text = ["### Side by side with the peers (`bench/radiomics_peers.py`)", "",
            f"`PYTHONPATH=src python bench/radiomics_peers.py --peers-python PEERS --params "
            f"{' '.join(str(p.resolve().relative_to(ROOT)) for p in args.params)} --source {' '.join(args.source)} "
            f"--rois {args.rois} --jobs {' '.join(map(str, args.jobs))} --rounds {args.rounds}` at radfuse "
            f"{commit}, {platform.node()} ({os.cpu_count()} cores, shared), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; peers: {versions(args.peers_python)}", ""]
    for params in args.params:
        for source in args.source:
            text.append(run_suite(args, params, source, work))
            print(text[-1], flush=True)
    text.append(f"- 1-minute load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}\n")
    print(text[-1])
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
