"""Table 1: test choice by Shapiro-Wilk / expected counts, p-values equal scipy's."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from radfuse.evaluate import table1


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 90
    group = np.repeat(["a", "b", "c"], 30)
    return pd.DataFrame({
        "group": group,
        "two": np.where(np.arange(n) % 2, "x", "y"),
        "age": rng.normal(60, 8, n) + 4 * (group == "b"),  # normal
        "crp": rng.lognormal(1, 1, n),  # skewed
        "sex": rng.choice(["F", "M"], n),
        "rare": np.where(np.arange(n) < 4, "yes", "no"),  # expected counts < 5
    })


def _row(table, variable):
    return table[table["variable"] == variable].iloc[0]


def test_normal_variable_three_groups_uses_anova(frame):
    table = table1.baseline_table(frame, ["age"], "group")
    row = _row(table, "age")
    samples = [frame.loc[frame.group == g, "age"] for g in "abc"]
    assert all(stats.shapiro(s).pvalue > 0.05 for s in samples)
    assert row["test"] == "ANOVA" and row["p_value"] == pytest.approx(stats.f_oneway(*samples).pvalue)
    assert row["a"] == f"{samples[0].mean():.2f} ({samples[0].std(ddof=1):.2f})"


def test_skewed_variable_uses_rank_tests(frame):
    row = _row(table1.baseline_table(frame, ["crp"], "group"), "crp")
    samples = [frame.loc[frame.group == g, "crp"] for g in "abc"]
    assert row["test"] == "Kruskal-Wallis" and row["p_value"] == pytest.approx(stats.kruskal(*samples).pvalue)
    assert row["a"].startswith(f"{np.median(samples[0]):.2f} [")
    two = _row(table1.baseline_table(frame, ["crp"], "two"), "crp")
    x, y = frame.loc[frame.two == "x", "crp"], frame.loc[frame.two == "y", "crp"]
    assert two["test"] == "Mann-Whitney U"
    assert two["p_value"] == pytest.approx(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def test_two_normal_groups_use_t_test(frame):
    row = _row(table1.baseline_table(frame, ["age"], "two"), "age")
    x, y = frame.loc[frame.two == "x", "age"], frame.loc[frame.two == "y", "age"]
    assert row["test"] == "t-test" and row["p_value"] == pytest.approx(stats.ttest_ind(x, y).pvalue)


def test_categorical_chi_square_and_fisher(frame):
    table = table1.baseline_table(frame, ["sex", "rare"], "two")
    sex = _row(table, "sex")
    assert sex["test"] == "chi-square"
    assert sex["p_value"] == pytest.approx(stats.chi2_contingency(pd.crosstab(frame.sex, frame.two)).pvalue)
    rare = _row(table, "rare")
    assert rare["test"] == "Fisher exact"
    assert rare["p_value"] == pytest.approx(stats.fisher_exact(pd.crosstab(frame.rare, frame.two)).pvalue)
    levels = table[(table["level"] == "F")]
    assert levels.iloc[0]["x"].endswith("%)")


def test_significant_variables(frame):
    table = table1.baseline_table(frame, ["age", "crp", "sex"], "group")
    expected = [v for v in ("age", "crp", "sex") if _row(table, v)["p_value"] < 0.05]
    assert table1.significant_variables(table) == expected
    assert "age" in expected  # built with a 4-year shift in group b


def test_summaries_keep_the_datas_precision():
    ages = pd.DataFrame({"age": [61, 64, 68, 70, 75, 80, 59, 66], "group": list("aaaabbbb")})
    row = _row(table1.baseline_table(ages, ["age"], "group"), "age")
    assert row["a"] in ("66 (4)", "66 [63, 69]") or re_int(row["a"]), row["a"]
    assert table1.decimals_of(np.array([1.5, 2.25])) == 2 and table1.decimals_of(np.array([3.0, 4.0])) == 0


def re_int(cell: str) -> bool:
    import re

    return re.fullmatch(r"\d+ [\[(]\d+(, \d+\])?\)?", cell) is not None


def test_levels_follow_the_given_order():
    frame = pd.DataFrame({"x": np.arange(8.0), "cohort": ["train", "external", "internal", "train"] * 2})
    table = table1.baseline_table(frame, ["x"], "cohort", order=("train", "internal", "external"))
    assert list(table.columns[2:5]) == ["train", "internal", "external"]
