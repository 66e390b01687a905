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


def _squashed_model() -> nomogram.CombinedModel:
    """The issue's case: a strong score and two weak clinical variables with long decimal ranges."""
    model = nomogram.CombinedModel(["rad_score", "age", "t_score"], {},
                                   {"rad_score": (-6.3, 5.9), "age": (41.0, 89.0), "t_score": (-4.87, 1.23)})
    model.coef, model.intercept = {"rad_score": 2.7, "age": 0.011, "t_score": 0.06}, -0.4
    return model


def test_nomogram_ticks_are_round_and_never_overlap():
    nomo = nomogram.build_nomogram(_squashed_model(), labels={"rad_score": "DTL score"})
    fig = nomogram.plot_nomogram(nomo, "class 1")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    rows: dict[float, list] = {}
    for text in fig.axes[0].texts:
        if text.get_text():
            rows.setdefault(round(text.get_position()[1], 3), []).append(text.get_window_extent(renderer))
    assert len(rows) >= 6
    for y, boxes in rows.items():
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not boxes[i].overlaps(boxes[j]), f"tick labels overlap on the axis at y={y}"
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "DTL score" in labels and "rad_score" not in labels
    age_ticks = [label for label, _ in dict(nomo.rows)["age"] if label]
    assert age_ticks and all(float(v) % 5 == 0 for v in age_ticks), age_ticks  # round values: 50, 60, ...
    assert all(len(label) <= 5 for _, ticks in nomo.rows for label, _ in ticks), nomo.rows
