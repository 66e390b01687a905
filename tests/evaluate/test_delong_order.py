"""metrics.json's DeLong list comes out in one order whatever Python's string hashing (PYTHONHASHSEED)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = textwrap.dedent("""
    import json
    from tests.evaluate import synthetic
    from radfuse.evaluate.context import ReportContext
    from radfuse.evaluate.sections_delong import paired_comparisons, unpaired_comparisons

    classes = ["0", "1"]
    manifest = synthetic.simulate_manifest(classes, {"train": 40, "internal": 20, "external": 20, "temporal": 20},
                                           seed=0)
    predictions = synthetic.simulate_predictions(manifest, classes, {("rad", "lr"): 1.0, ("fused", "lr"): 2.0},
                                                 seed=1)
    ctx = ReportContext(None, predictions, classes, manifest, [], {}, None,
                        selected=[("rad", "lr"), ("fused", "lr")])
    rows = paired_comparisons(ctx) + unpaired_comparisons(ctx)
    print(json.dumps([[r["type"], r["model1"], r["model2"], r["set1"], r["set2"], r["class"]] for r in rows]))
""")


def _rows(hash_seed: int) -> list:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_delong_rows_are_in_sorted_set_order_under_any_hash_seed():
    runs = [_rows(seed) for seed in (0, 1, 2, 3)]
    assert all(run == runs[0] for run in runs[1:])
    paired_sets = [row[3] for row in runs[0] if row[0] == "paired" and row[5] == "macro"]
    assert paired_sets == sorted(paired_sets) and len(set(paired_sets)) == 5  # train_cv, train + 3 cohorts
