"""Fuse at paper scale: the full Liu 2025 protocol on 1,000 synthetic ROIs (1,900 radiomics + 2,048 deep features).

    .venv/bin/python bench/fuse_scale.py [--rois 1000] [--n-jobs 2] [--feature-sets rad deep fused] [--classifiers ...]

Uses the shipped defaults (conf/fuse.yaml: ComBat -> ICC >= 0.8 -> z-score -> Spearman 0.9 -> LASSO 10-fold ->
|r| > 0.5 pruning; deep: z-score -> PCA 32; fusion -> z-score -> LASSO; 9 classifiers with their default grids;
5-fold patient-grouped CV; winners refit). Radiomics columns are noisy copies of 100 latent factors (so the
correlation filter has redundancy to remove); deep columns are a rank-64 signal plus noise. Prints wall time, peak
resident memory of the whole process tree (main + workers, sampled every 0.2 s) and the AUCs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from radfuse.fuse.design import block_table, design_frame  # noqa: E402
from radfuse.fuse.experiment import FusionSetup, run_fusion  # noqa: E402
from radfuse.fuse.search import ClassifierSpec  # noqa: E402


def synthetic_cohort(n_rois: int, n_rad: int, n_deep: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = np.arange(n_rois) * 10 // 11  # ~10 % of patients have two ROIs
    labels = rng.choice(3, size=patients.max() + 1, p=[0.5, 0.32, 0.18])[patients]  # class 2 rare, as in Liu
    sites = np.array(["A", "B", "C"])[rng.choice(3, size=patients.max() + 1, p=[0.6, 0.3, 0.1])[patients]]
    cohort = np.where(sites == "C", "external", np.where(rng.random(n_rois) < 0.8, "train", "internal"))
    manifest = pd.DataFrame({"case_id": [f"c{i:05d}" for i in range(n_rois)],
                             "patient_id": [f"p{p:05d}" for p in patients], "label": labels.astype(str),
                             "site": sites, "cohort": cohort})
    latent = rng.normal(size=(n_rois, 100)) + 0.6 * (labels[:, None] == np.arange(100) % 3) * (np.arange(100) < 12)
    loadings = np.zeros((100, n_rad))
    loadings[np.arange(n_rad) % 100, np.arange(n_rad)] = rng.uniform(0.5, 2.0, n_rad)
    rad = latent @ loadings + rng.normal(scale=rng.uniform(0.05, 1.0, n_rad), size=(n_rois, n_rad))
    deep_latent = rng.normal(size=(n_rois, 64)) + 0.5 * (labels[:, None] == np.arange(64) % 3) * (np.arange(64) < 9)
    deep = np.maximum(deep_latent @ rng.normal(size=(64, n_deep)) / 8 + 0.5 * rng.normal(size=(n_rois, n_deep)), 0)
    for s, (shift, scale) in {"A": (0.0, 1.0), "B": (0.4, 1.2), "C": (-0.3, 0.8)}.items():
        rows = sites == s
        rad[rows] = rad[rows] * scale + shift
    tables = {"rad": pd.DataFrame(rad, columns=[f"rad__f{i}" for i in range(n_rad)]),
              "deep": pd.DataFrame(deep, columns=[f"deep__penultimate_{i}" for i in range(n_deep)])}
    for t in tables.values():
        t.insert(0, "case_id", manifest.case_id)
    icc = pd.DataFrame({"feature": tables["rad"].columns[1:], "icc": rng.beta(8, 1.5, n_rad)})
    return manifest, tables, icc


class PeakMemory:
    """Peak summed RSS of this process and all its children, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)


def setup_from_config(icc_path: Path, n_jobs: int, feature_sets: list[str], classifiers: list[str] | None):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("fuse", overrides=["deep_features=embeddings", f"icc_table={icc_path}",
                                             f"n_jobs={n_jobs}"])
    names = classifiers or list(cfg.classifiers)
    specs = [ClassifierSpec(n, instantiate(cfg.classifiers[n].estimator),
                            OmegaConf.to_container(cfg.classifiers[n].grid)) for n in names]
    sets = {fs: list(cfg.feature_sets[fs]) for fs in feature_sets}
    blocks = {b: instantiate(cfg.blocks[b]) for b in {b for v in sets.values() for b in v}}
    return FusionSetup(classes=["0", "1", "2"], blocks=blocks, feature_sets=sets, final=instantiate(cfg.final),
                       classifiers=specs, n_splits=5, seed=0, n_jobs=n_jobs)


def time_rad_block(design, setup) -> None:
    """One fit of the radiomics block on the whole train cohort, step by step (where the time goes)."""
    train = design.rows((design.cohorts == "train").to_numpy())
    X = train.X[[c for c in train.X.columns if c.startswith("rad__")] + ["meta__site"]]
    y = train.labels.astype(int).to_numpy()
    for name, step in setup.blocks["rad"].items():
        if step is None:
            continue
        start = time.perf_counter()
        if hasattr(step, "set_output"):
            step.set_output(transform="pandas")
        kwargs = {"groups": train.patients.to_numpy()} if name == "lasso" else {}
        X = step.fit(X, y, **kwargs).transform(X)
        print(f"  {name:7s} {time.perf_counter() - start:6.1f} s -> {X.shape[1]} features")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=1000)
    parser.add_argument("--rad", type=int, default=1900)
    parser.add_argument("--deep", type=int, default=2048)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--feature-sets", nargs="+", default=["rad", "deep", "fused"])
    parser.add_argument("--classifiers", nargs="+", default=None)
    parser.add_argument("--rad-block-only", action="store_true", help="time one radiomics-block fit per step")
    args = parser.parse_args()
    manifest, tables, icc = synthetic_cohort(args.rois, args.rad, args.deep)
    with tempfile.TemporaryDirectory() as tmp:
        icc_path = Path(tmp) / "icc.parquet"
        icc.to_parquet(icc_path)
        design = design_frame(manifest, {k: block_table(v, k) for k, v in tables.items()})
        setup = setup_from_config(icc_path, args.n_jobs, args.feature_sets, args.classifiers)
        if args.rad_block_only:
            return time_rad_block(design, setup)
        start = time.perf_counter()
        with PeakMemory() as memory:
            result = run_fusion(design, setup)
        wall = time.perf_counter() - start
    print(f"ROIs {args.rois} (train {int((design.cohorts == 'train').sum())}), rad {args.rad}, deep {args.deep}, "
          f"classifiers {len(setup.classifiers)}, feature sets {list(setup.feature_sets)}, n_jobs {args.n_jobs}")
    print(f"wall time {wall:.0f} s ({wall / 60:.1f} min); peak RSS (process tree) {memory.peak / 2**30:.2f} GiB")
    n_folds = sum(c.startswith("split") and c.endswith("_test_score") for c in result.cv_results.columns)
    fit_seconds = result.cv_results.mean_fit_time * n_folds
    per_clf = result.cv_results.assign(s=fit_seconds).groupby("classifier").s.sum().sort_values(ascending=False)
    print("grid-search fit seconds per classifier (summed over candidates, folds, feature sets; cache hits are "
          "cheap):", ", ".join(f"{k} {v:.0f}" for k, v in per_clf.items()))
    for fs, m in result.metrics["feature_sets"].items():
        print(f"  {fs:8s} winner {m['winner']:10s} CV macro AUC {m['cv_macro_auc']:.3f}  "
              f"external macro AUC {m['external_macro_auc']:.3f}")


if __name__ == "__main__":
    main()
