"""ICC(3,1) and ICC(2,1) against Shrout & Fleiss (1979) and against pingouin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radfuse.extract.icc import feature_icc, icc_table

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; Table 4 gives ICC(2,1) = .29, ICC(3,1) = .71.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
                         dtype=float)


def test_shrout_fleiss_worked_example():
    values = icc_table(SHROUT_FLEISS)
    assert round(float(values["icc2_1"]), 2) == 0.29
    assert round(float(values["icc3_1"]), 2) == 0.71
    # the ANOVA of that table (their Table 3): BMS 11.24, JMS 32.49, EMS 1.02 -> ICC(3,1) in closed form
    bms, jms, ems, n, k = 11.24, 32.49, 1.02, 6, 4
    assert values["icc3_1"] == pytest.approx((bms - ems) / (bms + (k - 1) * ems), abs=2e-3)
    assert values["icc2_1"] == pytest.approx((bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n), abs=2e-3)


def _pingouin(ratings: np.ndarray) -> pd.DataFrame:
    pingouin = pytest.importorskip("pingouin")
    n, k = ratings.shape
    long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                         "score": ratings.ravel()})
    return pingouin.intraclass_corr(long, targets="target", raters="rater", ratings="score").set_index("Type")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pingouin_on_random_two_reader_features(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(25, 3)) * [1.0, 5.0, 0.2]
    first = truth + rng.normal(scale=0.3, size=truth.shape)
    second = truth + 0.4 + rng.normal(scale=0.3, size=truth.shape)  # a reader bias: ICC(2,1) < ICC(3,1)
    table = feature_icc(first, second, ["a", "b", "c"]).set_index("feature")
    for j, name in enumerate("abc"):
        reference = _pingouin(np.stack([first[:, j], second[:, j]], axis=1))
        for ours, theirs in (("icc3_1", "ICC(C,1)"), ("icc2_1", "ICC(A,1)")):
            assert table.loc[name, ours] == pytest.approx(reference.loc[theirs, "ICC"], abs=1e-10)
            low, high = reference.loc[theirs, "CI95"]  # pingouin rounds its bounds to 2 decimals
            assert table.loc[name, f"{ours}_low"] == pytest.approx(low, abs=0.005 + 1e-9)
            assert table.loc[name, f"{ours}_high"] == pytest.approx(high, abs=0.005 + 1e-9)
    assert (table["icc2_1"] < table["icc3_1"]).all()
    assert (table["n"] == 25).all()


def test_identical_readers_agree_perfectly_and_shapes_are_checked():
    x = np.random.default_rng(3).normal(size=(10, 2))
    table = feature_icc(x, x.copy(), ["u", "v"])
    assert np.allclose(table[["icc3_1", "icc2_1"]], 1.0)
    with pytest.raises(ValueError, match="do not match"):
        feature_icc(x, x[:, :1], ["u", "v"])
