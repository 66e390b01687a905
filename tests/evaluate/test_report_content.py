"""What a reviewer reads: the DeLong summary, numbers at small n, study order, the nomogram's inputs, Methods and
the CLEAR / TRIPOD+AI checklists. One small report (three held-out-capable cohorts, four feature sets)."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from tests.evaluate import synthetic
from radfuse.evaluate.report import build_report

CLASSES = ["0", "1", "2"]
FEATURE_SETS = {"rad": ["rad"], "deep": ["deep"], "fused": ["rad", "deep"],
                "fused+clinical": ["rad", "deep", "clinical"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 60, "internal": 24, "external": 24, "prospective": 6},
                                           seed=0)
    manifest["age"] = manifest["age"].round().astype(int)  # integer ages, as a hospital records them
    models = {("rad", "lr"): 0.8, ("fused", "lr"): 1.6, ("fused+clinical", "lr"): 2.2}
    predictions = synthetic.simulate_predictions(manifest, CLASSES, models, seed=1)
    root = tmp_path_factory.mktemp("content")
    out = root / "fuse" / "run"
    config = {"feature_sets": FEATURE_SETS, "cv": {"n_splits": 5, "seed": 0}, "report": {"n_resamples": 30},
              "paths": {"out": str(root)},
              "tables": {"rad": str(_extract_folder(root, manifest) / "radiomics.parquet")},
              "data": {"mode": "2d", "spacing": [1.0, 1.0, 1.0], "size": 64, "window": "bone_w1500_l500"},
              "blocks": {"rad": {"combat": {"_target_": "radfuse.fuse.combat.ComBat", "site_column": "meta__site"},
                                 "icc": {"_target_": "radfuse.fuse.filters.ICCFilter", "icc_column": "icc2_1",
                                         "threshold": 0.8}}}}
    case = manifest.loc[manifest.cohort == "external", "case_id"].iloc[0]
    from PIL import Image

    Image.new("RGB", (8, 8)).save(root / f"{case}_layer4.png")
    report = build_report(out, predictions, classes=CLASSES, manifest=manifest,
                          clinical_columns=["age", "sex", "t_score"],
                          extras={"n_resamples": 30, "config": config, "figure_dpi": 72,
                                  "gradcam": [root / f"{case}_layer4.png"],
                                  "selection": {"rad": {"lr": 0.7}, "fused": {"lr": 0.8},
                                                "fused+clinical": {"lr": 0.9}}})
    return report, json.loads((out / "metrics.json").read_text()), report.read_text()


def _extract_folder(root, manifest):
    """An extract run folder as radfuse writes it: settings, grey levels, ICC, deep sources, one refused case."""
    folder = root / "extract" / "default"
    folder.mkdir(parents=True)
    (folder / "radiomics.parquet").write_bytes(b"")
    (folder / "radiomics_params.json").write_text(json.dumps(
        {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": []},
         "setting": {"binWidth": 25, "normalize": True, "resampledPixelSpacing": [1, 1, 1]}}))
    pd.DataFrame({"image": ["original"], "n_rois": [118], "median": [32.0], "min": [12.0], "p05": [20.0],
                  "fraction_below": [0.02]}).to_csv(folder / "grey_levels.csv", index=False)
    pd.DataFrame({"feature": ["a", "b", "c"], "icc2_1": [0.95, 0.81, 0.42], "n": [20, 20, 20]}).to_parquet(
        folder / "icc.parquet")
    (folder / "deep_sources.json").write_text(json.dumps({"deep.parquet": {"source": "checkpoint", "train_run": "cnn",
                                                                           "checkpoint": "last.ckpt", "epoch": 19}}))
    pd.DataFrame({"case_id": [manifest["case_id"].iloc[0]], "reader": [1], "reason": ["empty mask"]}).to_csv(
        folder / "failures.csv", index=False)
    train = root / "train" / "cnn"
    train.mkdir(parents=True)
    (train / "config.yaml").write_text("model:\n  arch: resnet18\noptimizer:\n  _target_: torch.optim.AdamW\n"
                                       "  lr: 0.001\ntrainer:\n  max_epochs: 20\n")
    return folder


def _holm_by_hand(p):
    order = np.argsort(p)
    adjusted, running = np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_delong_summary_holds_fused_vs_single_on_held_out_cohorts_holm_adjusted(run):
    _, data, text = run
    summary = pd.DataFrame(data["delong_summary"])
    assert set(summary["cohort"]) <= {"internal", "external", "prospective"} and "internal" in set(summary["cohort"])
    assert summary["model1"].str.split("/").str[0].isin(["fused", "fused+clinical"]).all()
    assert (summary["model2"] == "rad/lr").all()
    assert len(summary) == 2 * summary["cohort"].nunique()  # two fused sets x one single block per cohort
    cohorts = list(dict.fromkeys(summary["cohort"]))
    assert cohorts == [c for c in ("internal", "external", "prospective") if c in cohorts]  # study order
    assert summary["p_holm"].to_numpy() == pytest.approx(_holm_by_hand(summary["p_value"].to_numpy()))
    assert (summary["p_holm"] >= summary["p_value"]).all()
    assert "p (Holm)" in text and "all comparisons" not in text  # the 100-row dump stays in delong.csv
    full = pd.read_csv(_dir(run) / "delong.csv")
    assert len(full) > len(summary) and {"train_cv"} <= set(full["set1"])
    assert (_dir(run) / "figures" / "delong_forest_fused_vs_single.png").is_file()


def _dir(run):
    return run[0].parent


def test_no_zero_width_intervals_and_small_n_says_so(run):
    _, data, text = run
    assert "0.000 (0.000-0.000)" not in text
    assert "n &lt; 10: no CI" in text  # the 6-patient prospective cohort
    sens = data["models"]["fused/lr"]["sets"]["internal"]["per_class"]["0"]["sensitivity"]
    assert sens["ci_wilson"][0] is not None and sens["n"] > 0


def test_overview_has_no_python_list_reprs_and_cohorts_are_in_study_order(run):
    _, _, text = run
    overview = text[text.index('<section id="overview">'):text.index("</section>")]
    assert "['" not in overview and "[(" not in overview
    table1 = text[text.index("Table 1 by cohort"):]
    header = table1[:table1.index("</tr>")]
    positions = [header.index(f"<th>{c}</th>") for c in ("train", "internal", "external", "prospective")]
    assert positions == sorted(positions)


def test_table1_keeps_the_datas_precision(run):
    _, data, _ = run
    rows = data["table1"]["by cohort"]
    age = next(r for r in rows if r["variable"] == "age")
    assert re.fullmatch(r"\d+ \[\d+, \d+\]|\d+ \(\d+\)", age["train"]), age["train"]
    t_score = next(r for r in rows if r["variable"] == "t_score")
    assert re.fullmatch(r"-?\d+\.\d\d [\[(].*", t_score["train"]), t_score["train"]


def test_combined_model_does_not_count_clinical_variables_twice(run):
    _, data, text = run
    combined = data["combined_model"]
    assert combined["model"].split("/")[0] == "fused"  # best selected set without the clinical block
    assert combined["excluded"] == ["fused+clinical/lr"]
    assert "already contains the clinical block" in text


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start:text.index("</section>", start)]


def test_methods_are_written_from_the_runs_artefacts(run):
    _, data, text = run
    methods = _section(text, "methods")
    assert "fixed bin width 25" in methods and "median 32 grey levels" in methods
    assert "Kept at icc2_1 &gt;= 0.8: 2 of 3 features" in methods
    assert "ComBat by meta__site" in methods
    assert "CNN resnet18" in methods and "AdamW lr 0.001" in methods and "20 epochs" in methods
    flow = {r["cohort"]: r for r in data["flow"]}
    assert list(flow) == ["train", "internal", "external", "prospective"]
    assert flow["train"]["ROIs refused or failed at extraction"] == 1 and flow["prospective"]["patients listed"] == 6
    assert "section_errors" not in data


def test_methods_without_inputs_say_not_recorded(tmp_path):
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 30}, seed=0)
    predictions = synthetic.simulate_predictions(manifest, CLASSES, {("rad", "lr"): 1.0}, seed=1)
    text = build_report(tmp_path, predictions[predictions.split == "oof"], classes=CLASSES,
                        extras={"n_resamples": 10}).read_text()
    methods = _section(text, "methods")
    assert methods.count("not recorded") >= 5 and "Error)" not in methods  # no paragraph broke


def test_clear_checklist_has_58_rows_pointing_to_sections_that_exist(run):
    _, data, text = run
    checklist = _section(text, "checklist")
    clear = checklist[checklist.index("CLEAR, 58 items"):checklist.index("TRIPOD+AI, 27 items")]
    rows = re.findall(r"<tr><td>(\d+)</td>", clear)
    assert rows == [str(i) for i in range(1, 59)]
    anchors = set(re.findall(r'<section id="([^"]+)">', text))
    links = re.findall(r'href="#([^"]+)"', checklist)
    assert links and set(links) <= anchors
    answered = {r["item"]: r["answered_by"] for r in data["checklists"]["CLEAR"]}
    assert answered["8"] == "to be completed by the authors"  # ethics: only the authors know
    assert "delong" in answered["41"] and "methods" in answered["31"]
    tripod = checklist[checklist.index("TRIPOD+AI, 27 items"):]
    assert len(re.findall(r"<tr><td>\d+</td>", tripod)) == 27


def test_gradcam_overlays_are_captioned_with_case_class_cohort_and_probabilities(run):
    _, _, text = run
    gradcam = _section(text, "gradcam")
    caption = re.search(r"<figcaption>([^<]+)</figcaption>", gradcam).group(1)
    assert re.fullmatch(r"external-\d{3}-0 - true class \d - external - fused\+clinical/lr: P\(0\) 0\.\d{3}, "
                        r"P\(1\) 0\.\d{3}, P\(2\) 0\.\d{3}", caption), caption
