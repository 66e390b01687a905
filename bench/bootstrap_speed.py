"""Bootstrap speed: 1,000 patient-level resamples of 1,000 cases (AUC; all report metrics), and DeLong.

    python bench/bootstrap_speed.py [--cases 1000] [--resamples 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from radfuse.evaluate import bootstrap, delong, metrics


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, classes = args.cases, ["0", "1", "2"]
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = labels == 1
    arrays = metrics.CaseArrays(labels.astype(str), probs, np.asarray(classes)[probs.argmax(1)], np.arange(n))
    cuts = np.full(3, 1 / 3)
    cases = {
        "AUC, percentile only": lambda: bootstrap.bootstrap_ci(
            lambda w: bootstrap.weighted_auc(y, probs[:, 1], w), n, n_resamples=args.resamples, bca=False),
        "AUC, percentile + BCa (jackknife incl.)": lambda: bootstrap.bootstrap_ci(
            lambda w: bootstrap.weighted_auc(y, probs[:, 1], w), n, n_resamples=args.resamples),
        "all 26 report metrics of 3 classes, percentile + BCa": lambda: bootstrap.bootstrap_ci(
            lambda w: metrics.weighted_metrics(arrays, classes, cuts, w), n, n_resamples=args.resamples),
        "DeLong paired test (fast)": lambda: delong.paired_test(y, probs[:, 1], probs[:, 0]),
    }
    print(f"{n} cases, {args.resamples} resamples, best of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    for name, fn in cases.items():
        print(f"{name:55s} {best_of(fn, args.repeats) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
