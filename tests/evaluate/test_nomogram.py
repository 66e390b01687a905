"""Combined model: raw-scale coefficients equal a direct fit; nomogram points reproduce its probabilities."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from radfuse.evaluate import nomogram


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"rad_score": rng.normal(size=n), "age": rng.normal(65, 9, n),
                          "sex": rng.choice(["F", "M"], n)})
    lp = -6 + 1.5 * frame.rad_score + 0.09 * frame.age - 0.7 * (frame.sex == "M")
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).to_numpy()
    return frame, y


def test_coefficients_equal_a_direct_unpenalised_fit(data):
    frame, y = data
    model = nomogram.fit_combined(frame, y, ["rad_score", "age", "sex"])
    design = np.column_stack([frame.rad_score, frame.age, frame.sex == "M"]).astype(float)
    direct = LogisticRegression(C=np.inf, max_iter=10000, tol=1e-10).fit(design, y)
    assert list(model.coef.values()) == pytest.approx(direct.coef_[0], rel=1e-3, abs=1e-4)
    assert model.intercept == pytest.approx(direct.intercept_[0], rel=1e-3)


def test_points_add_up_to_the_model_probability(data):
    frame, y = data
    model = nomogram.fit_combined(frame, y, ["rad_score", "age", "sex"])
    nomo = nomogram.build_nomogram(model)
    assert max(max(p for _, p in ticks) for _, ticks in nomo.rows) == pytest.approx(100)
    case = pd.DataFrame({"rad_score": [0.3], "age": [70.0], "sex": ["M"]})
    scale = nomo.points_per_unit_lp
    # points of a value = (its effect - the variable's smallest effect) * scale
    total = 0.0
    for var, ticks in nomo.rows:
        if var in model.levels:
            total += dict(ticks)["M"]
        else:
            lo, hi = model.ranges[var]
            effects = [model.coef[var] * lo, model.coef[var] * hi]
            total += (model.coef[var] * case[var].iloc[0] - min(effects)) * scale
    assert nomogram.total_points_to_probability(nomo, total) == pytest.approx(model.predict_proba(case)[0])


def test_nomogram_figure_renders(data):
    frame, y = data
    fig = nomogram.plot_nomogram(nomogram.build_nomogram(nomogram.fit_combined(frame, y, ["rad_score", "sex"])),
                                 "class 1")
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert {"Points", "rad_score", "sex", "Total points", "Probability"} <= set(labels)
