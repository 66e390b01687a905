"""Time build_report on a Liu-2025-sized run: 9 classifiers x 3 feature sets, 4 cohorts (860 patients).

    PYTHONPATH=src:. python bench/report_speed.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from radfuse.evaluate.report import build_report
from tests.evaluate import synthetic  # the simulated runs of the report tests

CLASSIFIERS = ["lr", "svm", "knn", "dt", "rf", "extratrees", "xgboost", "lightgbm", "mlp"]


def main() -> None:
    classes = ["0", "1", "2"]
    manifest = synthetic.simulate_manifest(classes, {"train": 500, "internal": 150, "external": 150,
                                                     "prospective": 60})
    models = {(fs, clf): strength + 0.1 * i for fs, strength in (("rad", 0.8), ("deep", 1.0), ("fused", 1.4))
              for i, clf in enumerate(CLASSIFIERS)}
    predictions = synthetic.simulate_predictions(manifest, classes, models)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        report = build_report(Path(out), predictions, classes=classes, manifest=manifest,
                              clinical_columns=["age", "sex", "t_score"])
        figures = len(list((report.parent / "figures").glob("*.png")))
    print(f"{len(predictions)} prediction rows, {len(models)} models, {figures} figures: "
          f"report in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
