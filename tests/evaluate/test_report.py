"""The report: every section renders with its inputs and says why when they are missing; the CLI."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, lasso_path
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.evaluate import synthetic
from radfuse.evaluate.__main__ import main
from radfuse.evaluate.report import build_report

CLASSES = ["0", "1", "2"]
SECTION_IDS = ["overview", "methods", "cohorts", "features", "classifiers", "performance", "roc", "delong", "dca",
               "calibration", "shap", "nomogram", "confusion", "gradcam", "provenance", "checklist"]


@pytest.fixture(scope="module")
def cohort():
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 60, "external": 30}, seed=0)
    models = {("rad", "lr"): 0.8, ("rad", "svm"): 1.0, ("fused", "lr"): 1.6}
    return manifest, synthetic.simulate_predictions(manifest, CLASSES, models, seed=1)


def _extras(manifest: pd.DataFrame, tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    train = manifest[manifest.cohort == "train"].set_index("case_id")
    y = train["label"].to_numpy()
    X = pd.DataFrame(rng.normal(size=(len(train), 5)) + y.astype(int)[:, None] * [1, 0.5, 0, 0, 0],
                     index=train.index, columns=[f"rad__f{i}" for i in range(5)])
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    alphas, coefs, _ = lasso_path(X.to_numpy(), y.astype(float), n_alphas=20)
    fig, ax = plt.subplots()
    ax.imshow(rng.random((16, 16)))
    fig.savefig(tmp / "gradcam_case1.png")
    plt.close(fig)
    return {
        "pipelines": {"fused": pipe}, "X_train": {"fused": X},
        "lasso": {"path": {"lambdas": alphas, "coefs": coefs, "features": list(X.columns)},
                  "coefs": dict(zip(X.columns, coefs[:, 5])), "lambda": float(alphas[5])},
        "cv_results": pd.DataFrame({"model": ["lr", "svm"], "mean_test_auc": [0.8, 0.82]}),
        "config": {"recalibration": "platt", "classifier": {"name": "lr"}},
        "versions": {"radfuse": "0.1.0"}, "gradcam": [tmp / "gradcam_case1.png"], "n_resamples": 200,
    }


@pytest.fixture(scope="module")
def full_report(cohort, tmp_path_factory):
    manifest, predictions = cohort
    tmp = tmp_path_factory.mktemp("full")
    report = build_report(tmp / "run", predictions, classes=CLASSES, manifest=manifest,
                          clinical_columns=["age", "sex", "t_score"], extras=_extras(manifest, tmp))
    return report


def test_full_report_has_every_section_and_no_gaps(full_report):
    text = full_report.read_text()
    for anchor in SECTION_IDS:
        assert f'<section id="{anchor}">' in text, anchor
    assert "not available" not in text
    assert 'src="http' not in text and "<script" not in text  # self-contained, opens offline
    assert text.count("data:image/png;base64,") > 25


def test_metrics_json_holds_every_number(full_report):
    data = json.loads((full_report.parent / "metrics.json").read_text())  # strict JSON: no NaN
    for key in ("models", "delong", "decision_curves", "calibration", "table1", "combined_model", "shap", "lasso",
                "classifier_comparison", "versions", "config"):
        assert key in data, key
    fused = data["models"]["fused/lr"]["sets"]
    assert set(fused) == {"train_cv", "train", "external"}
    assert fused["external"]["overall"]["macro_auc"]["ci_bca"][0] is not None
    assert set(data["decision_curves"]) == {"external"}  # held-out cohorts only
    comparison = {row["model"]: row["cv_macro_auc"] for row in data["classifier_comparison"]}
    best_rad = max(("rad/lr", "rad/svm"), key=comparison.get)
    assert data["selected_models"] == [best_rad, "fused/lr"]  # best per feature set, chosen on out-of-fold AUC
    assert "age" in data["baseline_significant"]  # the simulation ties age to the class


def test_every_figure_is_saved_as_png_and_pdf(full_report):
    folder = full_report.parent / "figures"
    pngs = {p.stem for p in folder.glob("*.png")}
    pdfs = {p.stem for p in folder.glob("*.pdf")}
    assert pngs == pdfs and len(pngs) > 25
    for prefix in ("roc_", "dca_", "calibration_", "confusion_", "shap_bar", "shap_beeswarm", "shap_decision",
                   "nomogram_", "lasso_path", "delong_forest", "classifier_comparison"):
        assert any(p.startswith(prefix) for p in pngs), prefix
    assert (full_report.parent / "delong.csv").is_file() and (full_report.parent / "shap_values.parquet").is_file()
    index = pd.read_csv(folder / "index.csv")  # a user finds each file's section
    assert set(index["file"]) == {p.name for p in folder.glob("*.p[nd][gf]")}
    assert set(index["anchor"]) <= set(SECTION_IDS)
    assert set(index.loc[index["file"].str.startswith("roc_"), "anchor"]) == {"roc"}


def test_minimal_report_says_what_is_missing(cohort, tmp_path):
    _, predictions = cohort
    refit_only = predictions[(predictions.split == "refit") & (predictions.feature_set == "fused")]
    text = build_report(tmp_path, refit_only, classes=CLASSES, extras={"n_resamples": 50}).read_text()
    text = text.replace("&#x27;", "'")
    for why in ("Table 1 needs the manifest", "passed no LASSO results", "no out-of-fold", "extras 'pipelines'",
                "no train run linked", "no configuration passed", "needs out-of-fold training predictions"):
        assert why in text, why
    assert text.count('class="na">not available: ') >= 7


def test_binary_task_and_cli_on_a_parquet(tmp_path):
    classes = ["acute", "chronic"]
    manifest = synthetic.simulate_manifest(classes, {"train": 50, "external": 30}, seed=2)
    predictions = synthetic.simulate_predictions(manifest, classes, seed=3)
    predictions.to_parquet(tmp_path / "predictions.parquet")
    manifest.assign(image="x.nii.gz", mask="m.nii.gz").to_csv(tmp_path / "manifest.csv", index=False)
    report = main([str(tmp_path / "predictions.parquet"), "--manifest", str(tmp_path / "manifest.csv"),
                   "--out", str(tmp_path / "out"), "--n-resamples", "100"])
    assert report == tmp_path / "out" / "report.html"
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(data["models"]["fused/lr"]["sets"]["external"]["per_class"]) == set(classes)
    assert list(data["combined_model"]["per_class"]) == ["chronic"]  # binary: one nomogram, positive class


def test_bad_predictions_name_the_missing_columns_and_cases(cohort, tmp_path):
    with pytest.raises(ValueError, match=r"prob__c"):
        build_report(tmp_path, pd.DataFrame({"case_id": ["1"], "label": ["a"]}), classes=["a", "c"])
    _, predictions = cohort
    broken = predictions.copy()
    broken.loc[3, "prob__1"] = np.nan
    with pytest.raises(ValueError, match=str(broken.loc[3, "case_id"])):
        build_report(tmp_path, broken, classes=CLASSES)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("RADFUSE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required (RADFUSE_REQUIRE_CHROMIUM=1): apt-get install -y chromium")
        pytest.skip("chromium not installed")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", *args], check=True, timeout=120,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(full_report, tmp_path):
    """What a reviewer sees in a browser: a non-blank page, and in the rendered DOM every section, a Holm-adjusted
    DeLong summary, 58 CLEAR rows with links that land on sections, no zero-width intervals, no list reprs; the
    figures behind it: every ROC legend entry with a CI, nomogram tick labels that never overlap, SHAP labels that
    are the model's real feature names."""
    import re

    from radfuse.evaluate import nomogram

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", full_report.as_uri())
    image = plt.imread(shot)
    assert image.shape[0] >= 2000 and image.shape[1] >= 1200
    grey = image[..., :3].mean(axis=2)
    assert (grey < 0.5).mean() > 0.005  # text and figures, not a blank page
    assert grey.std() > 0.05

    dom = _chromium(tmp_path, "--dump-dom", full_report.as_uri()).stdout
    anchors = set(re.findall(r'<section id="([^"]+)">', dom))
    assert set(SECTION_IDS) <= anchors
    assert "p (Holm)" in dom and "0.000 (0.000-0.000)" not in dom
    overview = dom[dom.index('<section id="overview">'):dom.index("</section>")]
    assert "['" not in overview
    checklist = dom[dom.index('<section id="checklist">'):]
    clear = checklist[checklist.index("CLEAR, 58 items"):checklist.index("TRIPOD+AI, 27 items")]
    assert re.findall(r"<tr><td>(\d+)</td>", clear) == [str(i) for i in range(1, 59)]
    assert set(re.findall(r'href="#([^"]+)"', checklist)) <= anchors

    run = full_report.parent
    data = json.loads((run / "metrics.json").read_text())
    summary = data["delong_summary"]
    p = np.array([r["p_value"] for r in summary])
    by_hand = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * np.sort(p)))
    assert np.array([r["p_holm"] for r in summary])[np.argsort(p)] == pytest.approx(by_hand)

    features = set(pd.read_parquet(run / "shap_values.parquet")["feature"])
    assert features and features <= {f"rad__f{i}" for i in range(5)}  # real names, never 'Feature 3'
    for png in sorted((run / "figures").glob("nomogram_*.png")):
        assert png.with_suffix(".pdf").is_file()
    model = nomogram.fit_combined(pd.DataFrame({"rad_score": np.linspace(-3, 3, 40), "age": np.arange(40) + 50.5}),
                                  np.arange(40) % 3 == 0, ["rad_score", "age"])
    fig = nomogram.plot_nomogram(nomogram.build_nomogram(model), "t")
    fig.canvas.draw()
    rows: dict[float, list] = {}
    for text in fig.axes[0].texts:
        rows.setdefault(round(text.get_position()[1], 3), []).append(text.get_window_extent())
    assert all(not a.overlaps(b) for boxes in rows.values() for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_lasso_per_class_path_and_coefficients(cohort, tmp_path):
    _, predictions = cohort
    rng = np.random.default_rng(0)
    lasso = {"fused": {"path": {"lambdas": np.logspace(0, -3, 15), "coefs": rng.normal(size=(15, 3, 4)),
                                "features": list("abcd"), "classes": CLASSES},
                       "coefs": pd.DataFrame(rng.normal(size=(4, 3)) * [1, 0, 1], index=list("abcd"),
                                             columns=CLASSES),
                       "lambda": 0.01}}
    # the rad block as an sklearn selector holds it: coef_path_ (lambdas, classes, features), coef_ (classes, features)
    lasso["rad"] = {"path": {"lambdas": np.logspace(0, -3, 15), "coefs": rng.normal(size=(15, 3, 4))},
                    "coefs": rng.normal(size=(3, 4)), "features": list("efgh"), "classes": CLASSES, "lambda": 0.1}
    fused = predictions[(predictions.feature_set == "fused") & (predictions.split == "oof")]
    build_report(tmp_path, fused, classes=CLASSES, extras={"lasso": lasso, "n_resamples": 20})
    pngs = {p.stem for p in (tmp_path / "figures").glob("lasso_*.png")}
    assert len([p for p in pngs if p.startswith("lasso_path_fused_class")]) == 3
    assert len([p for p in pngs if p.startswith("lasso_coefficients_fused")]) == 3
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert set(data["lasso"]["fused"]["coefficients"]) == set("abcd")
    assert data["lasso"]["rad"]["coefficients"]["e"].keys() == set(CLASSES)


def test_metrics_json_keeps_what_fuse_wrote(cohort, tmp_path):
    _, predictions = cohort
    fused = predictions[(predictions.feature_set == "fused") & (predictions.split == "oof")]
    (tmp_path / "metrics.json").write_text(json.dumps({"feature_sets": {"fused": {"winner": "lr"}}}))
    build_report(tmp_path, fused, classes=CLASSES, extras={"n_resamples": 20, "lasso": {"coefs": {"a": 1.0}}})
    build_report(tmp_path, fused, classes=CLASSES, extras={"n_resamples": 20, "winners": {"fused": "lr"}})
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["feature_sets"] == {"fused": {"winner": "lr"}}
    assert "models" in data and "lasso" not in data  # the stale key of the first report is gone
    assert data["selected_models"] == ["fused/lr"]
    with pytest.raises(ValueError, match="winners"):
        build_report(tmp_path, fused, classes=CLASSES, extras={"winners": {"fused": "svm"}})


def test_several_rois_per_patient_and_a_class_missing_from_a_cohort(tmp_path):
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 30, "external": 15}, rois_per_patient=2, seed=4)
    predictions = synthetic.simulate_predictions(manifest, CLASSES, {("rad", "lr"): 1.0, ("fused", "lr"): 1.5})
    predictions = predictions[~((predictions.cohort == "external") & (predictions.label == "2"))]
    predictions = predictions[(predictions.split == "oof") | (predictions.cohort == "external")]
    build_report(tmp_path, predictions, classes=CLASSES, manifest=manifest, clinical_columns=["age"],
                 extras={"n_resamples": 50})
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert "section_errors" not in data
    external = data["models"]["fused/lr"]["sets"]["external"]
    assert external["n_patients"] * 2 == external["n_cases"]
    assert external["per_class"]["2"]["auc"]["estimate"] is None
    skipped = [r for r in data["delong"] if r["class"] == "2" and r["set1"] == "external" and r["type"] == "paired"]
    assert skipped and "at least 2 positive" in skipped[0]["note"]


def test_one_selection_rule_for_winners_table_and_combined_model(cohort, tmp_path):
    """Issue 11, defect 5: the fitting stage picks winners by its mean CV-fold AUC; the report ranked and picked by
    the pooled out-of-fold AUC, so its table's top row was often not the reported winner. Here the stage's
    criterion prefers rad/lr although rad/svm (stronger simulated signal) has the higher pooled AUC."""
    manifest, predictions = cohort
    selection = {"rad": {"lr": 0.91, "svm": 0.85}, "fused": {"lr": 0.88}}
    rule = "Winner = highest mean CV-fold macro AUC (test rule)."
    build_report(tmp_path, predictions, classes=CLASSES, manifest=manifest, clinical_columns=["age"],
                 extras={"n_resamples": 50, "selection": selection, "selection_rule": rule})
    data = json.loads((tmp_path / "metrics.json").read_text())
    pooled = {r["model"]: r["cv_macro_auc"] for r in data["classifier_comparison"]}
    assert pooled["rad/svm"] > pooled["rad/lr"]  # the two rules disagree on this cohort
    assert data["selected_models"] == ["rad/lr", "fused/lr"]
    rad_rows = [r for r in data["classifier_comparison"] if r["feature set"] == "rad"]
    assert [r["model"] for r in rad_rows] == ["rad/lr", "rad/svm"] and rad_rows[0]["winner"] == "yes"
    assert data["combined_model"]["model"] == "rad/lr"  # by the same rule: 0.91 beats fused/lr's 0.88
    assert rule in (tmp_path / "report.html").read_text()


def test_combined_model_training_auc_is_cross_fitted(tmp_path):
    """Issue 11, defect 6: the combined model was fitted on the out-of-fold rows and scored on the same rows. Its
    training-cohort AUC must come from the stage's folds: fitted without fold k, scored on fold k. Checked against
    an independent refit with scikit-learn on the same folds."""
    from scipy.special import logit
    from sklearn.metrics import roc_auc_score

    classes = ["0", "1"]
    manifest = synthetic.simulate_manifest(classes, {"train": 80, "external": 20}, seed=3)
    manifest = manifest.drop(columns=["age", "sex", "t_score"])  # rad-score only: no variable choice involved
    predictions = synthetic.simulate_predictions(manifest, classes, {("rad", "lr"): 0.6}, seed=4)
    oof = predictions[predictions.split == "oof"].reset_index(drop=True)
    folds = {c: i % 4 for i, c in enumerate(oof["case_id"])}
    build_report(tmp_path, predictions, classes=classes, manifest=manifest,
                 extras={"n_resamples": 20, "fold_of_case": folds})
    reported = json.loads((tmp_path / "metrics.json").read_text())["combined_model"]["per_class"]["1"]["auc"]

    score = logit(oof["prob__1"].clip(1e-6, 1 - 1e-6)).to_numpy()[:, None]
    y = (oof["label"] == "1").to_numpy()
    fold = oof["case_id"].map(folds).to_numpy()
    crossed = np.zeros(len(oof))
    for k in range(4):
        fit = LogisticRegression(C=np.inf).fit(score[fold != k], y[fold != k])
        crossed[fold == k] = fit.predict_proba(score[fold == k])[:, 1]
    assert reported["train_cv"][0] == pytest.approx(roc_auc_score(y, crossed), abs=1e-6)
    assert reported["train_cv"][0] != pytest.approx(roc_auc_score(y, score[:, 0]), abs=1e-4)  # not in-sample
