"""The demo's headline table from a finished fuse run: per feature set, the winner's training-cohort CV and
held-out AUCs (macro one-vs-rest, 95 % patient-bootstrap percentile CIs) from metrics.json.

    python bench/demo_aucs.py demo_out/fuse/default/metrics.json
"""

from __future__ import annotations

import json
import sys

COHORTS = ("train_cv", "internal", "external", "prospective")


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("estimate") is None:
        return "n/a"
    low, high = (entry.get("ci_percentile") or [None, None])[:2]
    return f"{entry['estimate']:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{entry['estimate']:.3f}"


def main(path: str) -> None:
    metrics = json.loads(open(path).read())
    print("| feature set | winner | CV (mean of folds) | " + " | ".join(COHORTS) + " |")
    print("|---" * (3 + len(COHORTS)) + "|")
    for fs, entry in metrics["feature_sets"].items():
        model = f"{fs}/{entry['winner']}"
        sets = metrics["models"][model]["sets"]
        cells = [_fmt(sets.get(c, {}).get("overall", {}).get("macro_auc")) for c in COHORTS]
        print(f"| {fs} | {entry['winner']} | {entry['cv_macro_auc']:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
