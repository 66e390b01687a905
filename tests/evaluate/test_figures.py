"""Every report figure draws what it says (curves, labels, legends) and renders without any backend switch."""

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

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


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_every_figure_draws_its_curves_labels_and_legend(sample):
    labels, probs = sample
    roc = figures.roc_figure(labels, probs, CLASSES, "roc").axes[0]
    assert (roc.get_xlabel(), roc.get_ylabel(), roc.get_title()) == ("1 - specificity", "sensitivity", "roc")
    assert len(roc.get_lines()) == 3 + 2 + 1  # a curve per class, micro and macro averages, the chance diagonal
    assert [e.split(":")[0] for e in _legend(roc)] == ["class 0", "class 1", "class 2", "micro-average",
                                                       "macro-average"]

    curves = {"lr": dca.decision_curves(labels, probs, CLASSES), "rf": dca.decision_curves(labels, probs ** 2,
                                                                                            CLASSES)}
    net = figures.decision_curve_figure(curves, "1", "dca").axes[0]
    assert (net.get_xlabel(), net.get_ylabel(), net.get_title()) == ("threshold probability", "net benefit", "dca")
    assert _legend(net) == ["lr", "rf", "treat all", "treat none"]
    frame = curves["lr"][curves["lr"]["class"] == "1"]
    assert net.get_lines()[0].get_ydata() == pytest.approx(frame["net_benefit"].to_numpy())

    cal = figures.calibration_figure(labels, probs, CLASSES, "cal").axes[0]
    assert (cal.get_xlabel(), cal.get_ylabel()) == ("predicted probability", "observed frequency")
    assert _legend(cal) == ["class 0", "class 1", "class 2"]
    assert all(0 < len(line.get_xdata()) <= 9 for line in cal.get_lines()[:3])  # 90 cases: 9 quantile bins
    binary = figures.calibration_figure(labels == "1", np.column_stack([1 - probs[:, 1], probs[:, 1]]),
                                        ["False", "True"], "cal").axes[0]
    assert _legend(binary) == ["class True"]  # two classes: the positive class only

    matrix = np.array([[5, 1, 0], [2, 6, 1], [0, 1, 7]])
    cm = figures.confusion_figure(matrix, CLASSES, "cm").axes[0]
    assert [t.get_text() for t in cm.texts] == [str(v) for v in matrix.ravel()]
    assert np.asarray(cm.get_images()[0].get_array()).tolist() == matrix.tolist()
    assert [t.get_text() for t in cm.get_xticklabels()] == CLASSES and cm.get_ylabel() == "true"

    rows = pd.DataFrame({"name": ["a", "b"], "v": [0.7, 0.8], "lo": [0.6, 0.7], "hi": [0.8, 0.9]})
    forest = figures.interval_figure(rows, "name", "v", "lo", "hi", "AUC", "forest", reference=0.5,
                                     annotations=["p=0.01", "p=0.20"]).axes[0]
    rows_at = {t.get_text(): y for t, y in zip(forest.get_yticklabels(), forest.get_yticks())}
    assert rows_at == {"a": 1, "b": 0}  # first row on top
    assert forest.get_lines()[0].get_xdata().tolist() == [0.7, 0.8]
    assert list(forest.get_lines()[-1].get_xdata()) == [0.5, 0.5]  # the reference line
    assert [t.get_text() for t in forest.texts] == ["p=0.01", "p=0.20"] and forest.get_xlabel() == "AUC"

    bars = figures.coefficient_figure(pd.Series({"a": 0.5, "b": -0.2, "c": 0.0})).axes[0]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["b", "a"]  # zero dropped, sorted by value
    assert [p.get_width() for p in bars.patches] == pytest.approx([-0.2, 0.5])
    assert [to_hex(p.get_facecolor()) for p in bars.patches] == [to_hex("tab:blue"), to_hex("tab:red")]


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


LEAVES_BACKEND = textwrap.dedent("""
    import matplotlib
    matplotlib.use("svg")  # the application's choice; radfuse must keep it
    import matplotlib.pyplot as plt
    import numpy as np
    from radfuse.evaluate import figures, html, nomogram, report, shap_explain
    from radfuse.models import cam
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40).astype(str)
    p = rng.random(40)
    sink = html.FigureSink(r"{out}")
    sink.embed(figures.roc_figure(labels, np.column_stack([1 - p, p]), ["0", "1"], "roc", n_resamples=5), "roc")
    result = shap_explain.ShapResult(rng.normal(size=(6, 3, 2)), np.zeros(2), rng.normal(size=(6, 3)),
                                     list("abc"), [str(i) for i in range(6)], ["0", "1"], "linear", "log-odds")
    current = plt.figure()  # the application's own current figure
    sink.embed(shap_explain.plot_beeswarm(result, 1), "beeswarm")
    sink.embed(shap_explain.plot_decision(result, 1, [0, 1]), "decision")
    cam.save_overlay(rng.random((1, 8, 8, 8)), rng.random((8, 8, 8)), r"{out}/cam.png")
    assert plt.gcf() is current and plt.get_fignums() == [current.number], plt.get_fignums()
    print(matplotlib.get_backend())
""")


def test_figures_leave_the_process_backend_and_pyplot_alone(tmp_path):
    """No `matplotlib.use` anywhere: an application's backend survives importing radfuse and rendering its
    figures (SHAP's pyplot ones included), and pyplot holds none of them afterwards."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", LEAVES_BACKEND.format(out=tmp_path)], capture_output=True,
                          text=True, cwd=root, env={"PYTHONPATH": f"{root / 'src'}", "PATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "svg"
    assert {p.name for p in tmp_path.iterdir()} >= {"roc.png", "beeswarm.pdf", "decision.png", "cam.png"}


def test_pyplot_draws_on_a_figure_and_lets_it_go():
    import matplotlib.pyplot as plt

    from radfuse.evaluate.canvas import new_figure, pyplot_draws_on

    before = plt.get_fignums()
    with pyplot_draws_on(new_figure()) as fig:
        plt.plot([0, 1], [1, 0])
        assert plt.gcf() is fig
    assert plt.get_fignums() == before and fig.canvas.manager is None
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == [1, 0]


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
