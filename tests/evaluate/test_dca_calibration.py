"""Net benefit by hand; calibration intercept / slope against closed forms; recalibration."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from radfuse.evaluate import calibration, dca


def test_net_benefit_by_hand():
    # 10 cases, 4 events. At pt = 0.25 the model treats 5 cases: 3 events (TP) and 2 non-events (FP).
    y = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.3, 0.1, 0.2, 0.1, 0.05, 0.2])
    nb = dca.net_benefit(y, p, [0.25])[0]
    assert nb == pytest.approx(3 / 10 - 2 / 10 * (0.25 / 0.75))
    assert dca.treat_all(y, [0.25])[0] == pytest.approx(0.4 - 0.6 * (1 / 3))
    assert dca.net_benefit(y, p, [0.95])[0] == 0.0  # nobody treated
    curves = dca.decision_curves(np.where(y == 1, "yes", "no"), np.column_stack([1 - p, p]), ["no", "yes"],
                                 thresholds=[0.25])
    assert list(curves["class"]) == ["yes"] and curves["net_benefit"].iloc[0] == pytest.approx(nb)
    assert curves["treat_none"].iloc[0] == 0


def _simulate(rng, n=20000):
    true_p = rng.beta(2, 3, size=n)
    return true_p, (rng.random(n) < true_p).astype(int)


def test_perfect_calibration_gives_zero_intercept_unit_slope():
    true_p, y = _simulate(np.random.default_rng(0))
    a, b = calibration.calibration_intercept_slope(y, true_p)
    assert a == pytest.approx(0, abs=0.05) and b == pytest.approx(1, abs=0.05)


def test_overconfident_and_shifted_predictions():
    true_p, y = _simulate(np.random.default_rng(1))
    lp = calibration.logit(true_p)
    overconfident = 1 / (1 + np.exp(-2 * lp))  # logit doubled: slope 1/2
    assert calibration.calibration_intercept_slope(y, overconfident)[1] == pytest.approx(0.5, abs=0.04)
    shifted = 1 / (1 + np.exp(-(lp + 1)))  # predictions too high by 1 logit: intercept -1
    assert calibration.calibration_intercept_slope(y, shifted)[0] == pytest.approx(-1, abs=0.06)


def test_brier_and_reliability_match_sklearn():
    rng = np.random.default_rng(2)
    true_p, y = _simulate(rng, 2000)
    assert calibration.brier_score(y, true_p) == pytest.approx(brier_score_loss(y, true_p))
    curve = calibration.reliability_curve(y, true_p, n_bins=5, strategy="uniform")
    observed, predicted = calibration_curve(y, true_p, n_bins=5, strategy="uniform")
    assert curve["observed"].to_numpy() == pytest.approx(observed)
    assert curve["mean_predicted"].to_numpy() == pytest.approx(predicted)
    assert curve["count"].sum() == 2000


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_recalibration_fixes_overconfidence_out_of_sample(method):
    rng = np.random.default_rng(3)
    true_p, y = _simulate(rng, 6000)
    bad = 1 / (1 + np.exp(-2.5 * calibration.logit(true_p)))
    probs, truth = np.column_stack([1 - bad, bad]), np.column_stack([1 - y, y]).astype(bool)
    fitted = calibration.Recalibrator(method).fit(truth[:3000], probs[:3000])
    fixed = fitted.transform(probs[3000:])
    assert fixed.sum(axis=1) == pytest.approx(np.ones(3000))
    slope = calibration.calibration_intercept_slope(y[3000:], fixed[:, 1])[1]
    assert slope == pytest.approx(1, abs=0.15)
    crossfit = calibration.crossfit_recalibrate(truth, probs, np.arange(6000), method)
    assert calibration.calibration_intercept_slope(y, crossfit[:, 1])[1] == pytest.approx(1, abs=0.15)


def test_unknown_recalibration_method_names_the_choices():
    with pytest.raises(ValueError, match="platt"):
        calibration.Recalibrator("beta")
