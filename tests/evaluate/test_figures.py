"""Every report figure renders headless (Agg) and writes a non-empty PNG."""

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest

from radfuse.evaluate import dca, figures

CLASSES = ["0", "1", "2"]


def _png_size(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return len(buffer.getvalue())


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels.astype(str), probs


def test_backend_is_headless():
    assert matplotlib.get_backend().lower() == "agg"


def test_all_figures_render(sample):
    labels, probs = sample
    curves = {"m": dca.decision_curves(labels, probs, CLASSES)}
    frame = pd.DataFrame({"name": ["a", "b"], "v": [0.7, 0.8], "lo": [0.6, 0.7], "hi": [0.8, 0.9]})
    path = pd.DataFrame(np.cumsum(np.random.default_rng(1).normal(size=(20, 4)), 0),
                        index=np.logspace(-3, 0, 20), columns=list("wxyz"))
    made = [
        figures.roc_figure(labels, probs, CLASSES, "roc"),
        figures.decision_curve_figure(curves, "1", "dca"),
        figures.calibration_figure(labels, probs, CLASSES, "cal"),
        figures.confusion_figure(np.array([[5, 1, 0], [2, 6, 1], [0, 1, 7]]), CLASSES, "cm"),
        figures.interval_figure(frame, "name", "v", "lo", "hi", "AUC", "forest", reference=0.5),
        figures.lasso_path_figure(path, 0.01),
        figures.coefficient_figure(pd.Series({"a": 0.5, "b": -0.2, "c": 0.0})),
    ]
    for fig in made:
        assert _png_size(fig) > 2000


def test_roc_figure_has_class_and_average_curves(sample):
    labels, probs = sample
    legend = [t.get_text() for t in figures.roc_figure(labels, probs, CLASSES, "x").axes[0].get_legend().texts]
    assert sum(t.startswith("class") for t in legend) == 3
    assert any(t.startswith("micro") for t in legend) and any(t.startswith("macro") for t in legend)


def test_roc_legend_quotes_the_tables_macro_auc(sample):
    from sklearn.metrics import roc_auc_score

    labels, probs = sample
    legend = [t.get_text() for t in figures.roc_figure(labels, probs, CLASSES, "x").axes[0].get_legend().texts]
    macro = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert any(t.startswith(f"macro-average: AUC {macro:.3f} (95% CI ") for t in legend)


def test_roc_legend_holds_auc_with_ci_and_bands_are_drawn(sample):
    from matplotlib.collections import PolyCollection
    from sklearn.metrics import roc_auc_score

    labels, probs = sample
    fig = figures.roc_figure(labels, probs, CLASSES, "t", n_resamples=100, seed=3)
    entries = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(entries) == 5  # 3 classes, micro, macro
    assert all("95% CI" in e for e in entries)
    bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3
    # the legend's estimate is scikit-learn's AUC; its interval is the percentile interval of a patient bootstrap
    # redone here independently (same seed, same draws: a multinomial of n over n patients per resample)
    rng = np.random.default_rng(3)
    counts = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=100)
    y = labels == "1"
    boot = [roc_auc_score(np.repeat(y, c), np.repeat(probs[:, 1], c)) for c in counts]
    low, high = np.percentile(boot, [2.5, 97.5])
    assert entries[1] == f"class 1: AUC {roc_auc_score(y, probs[:, 1]):.3f} (95% CI {low:.3f}-{high:.3f})"


def test_lasso_path_has_a_legend_of_top_features_and_the_lambda_in_3_significant_digits():
    lambdas = np.logspace(-3, 0, 20)
    signs = np.where(np.arange(12) % 2, -1, 1)  # |coef| orders the legend, not the sign
    path = pd.DataFrame(np.outer(1 - lambdas, np.arange(12) * signs), index=lambdas,
                        columns=[f"feature_{i}" for i in range(12)])
    fig = figures.lasso_path_figure(path, 0.0099549622268932, "t", top=5)
    entries = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert entries[0] == "chosen lambda = 0.00995"
    assert entries[1:] == [f"feature_{i}" for i in (11, 10, 9, 8, 7)]  # largest |coef| at the chosen lambda first


def test_figure_files_are_300_dpi_png_and_pdf(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    from radfuse.evaluate.html import FigureSink

    sink = FigureSink(tmp_path)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    tag = sink.embed(fig, "roc_fused/lr_external")
    png = Image.open(tmp_path / "roc_fused_lr_external.png")
    assert png.info["dpi"][0] == pytest.approx(300, abs=1)
    assert png.size[0] > 3.5 * 300 * 0.8  # about 4 inches at 300 dpi (tight bounding box)
    assert (tmp_path / "roc_fused_lr_external.pdf").read_bytes()[:4] == b"%PDF"
    assert "data:image/png;base64," in tag


def test_roc_band_equals_scikit_learn_curves_on_each_resample():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 60).astype(bool)
    s = np.round(rng.normal(size=60) + y, 1)  # ties
    counts = rng.multinomial(60, np.full(60, 1 / 60), size=5).astype(float)
    grid = np.linspace(0, 1, 51)
    band = figures._roc_band(y, s, counts, grid)
    for b, c in enumerate(counts.astype(int)):
        drawn = np.repeat(np.arange(60), c)
        fpr, tpr, _ = roc_curve(y[drawn], s[drawn])
        assert band[b] == pytest.approx(np.interp(grid, fpr, tpr), abs=1e-12)
