"""Grad-CAM panels of the fuse report come from the CNN that scored each case (the fold CNN trained without a
training case's fold; the mean of the fold CNNs for any other case), and are labelled with case, true class,
cohort, the shown fused model's predicted probability, the CNN and a colour bar."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from radfuse.artifacts import COMPLETE_FILE, mark_complete
from tests.evaluate import synthetic
from radfuse.evaluate.gradcam import CamPanel
from tests.extract.crossfit_runs import CONF, extract_cfg, fold_run, small_cohort

pytest.importorskip("radfuse.models")


def _fuse_cfg(out, manifest, *overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("fuse", overrides=[
            f"paths.out={out}", f"data.manifest={manifest}", "data.classes=[0,1]", "~data.clinical",
            "data.split.n_folds=2", "data.size=32", "data.channels=1", "data.mode=2d", *overrides])


def _expected_cam(models, crop, layer="layer2"):
    """Grad-CAM computed directly from the given checkpoints' models, for the class their mean score favours."""
    from radfuse.models.cam import grad_cam

    with torch.no_grad():
        logits = torch.stack([m(crop[None])[0] for m in models])
    target = (logits - logits.mean(1, keepdim=True)).mean(0).argmax().view(1)
    return torch.stack([grad_cam(m, crop[None], layer, target=target)[0] for m in models]).mean(0).numpy()


def test_each_case_is_mapped_by_the_cnn_that_scored_it(tmp_path, capsys):
    from radfuse.models.module import load_classifier
    from radfuse.stages import extract
    from radfuse.stages.common import load_cohort
    from radfuse.stages.fuse_gradcam import gradcam_panels

    manifest, out = small_cohort(tmp_path), tmp_path / "out"
    cfg = extract_cfg(out, manifest, "extract.deep.crossfit.train_runs=cv")
    for k in (0, 1):
        fold_run(out, f"cv{k}", k, cfg)
    extract.run(cfg)
    fuse_cfg = _fuse_cfg(out, manifest, "report.gradcam_per_class=5",
                        "report.gradcam_layer=layer2")  # 8 x 8 at 32 px: last-stage maps of 32-px crops are 1 x 1
    cohort = load_cohort(fuse_cfg)
    panels = gradcam_panels(fuse_cfg, cohort)

    models = {k: load_classifier(str(out / "train" / f"cv{k}" / "last.ckpt")).eval() for k in (0, 1)}
    frame = cohort.frame.set_index("case_id")
    folds = cohort.splits.fold_of(cohort.frame).set_axis(cohort.frame["case_id"])
    cohorts = cohort.splits.cohort_of(cohort.frame).set_axis(cohort.frame["case_id"])
    scored = pd.read_parquet(out / "extract" / "default" / "deep_crossfit.parquet").set_index("case_id")
    assert {p.case_id for p in panels} == set(frame.index) and {p.block for p in panels} == {"deep"}
    assert set(cohorts[[p.case_id for p in panels]]) == {"train", "external"}
    for panel in panels:
        crop = torch.from_numpy(panel.image)
        if cohorts[panel.case_id] == "train":
            k = int(folds[panel.case_id])
            used, other = [models[k]], models[1 - k]
            assert f"fold-{k} CNN (train run cv{k}, last.ckpt)" in panel.cnn
            assert not np.allclose(panel.heat, _expected_cam([other], crop), atol=1e-3)  # the other fold's map
        else:
            used = [models[0], models[1]]
            assert "mean of the Grad-CAMs of the 2 fold CNNs" in panel.cnn and "cv0" in panel.cnn
        np.testing.assert_allclose(panel.heat, _expected_cam(used, crop), atol=1e-5, err_msg=panel.case_id)
        with torch.no_grad():  # the very network(s) whose scores the deep block holds for this case
            logits = torch.stack([m(crop[None])[0] for m in used]).mean(0)
        np.testing.assert_allclose(scored.loc[panel.case_id].to_numpy(), (logits - logits.mean()).numpy(),
                                   atol=1e-4, err_msg=panel.case_id)

    (out / "train" / "cv1" / COMPLETE_FILE).unlink()  # a fold run gone: no panel, and no silent single-CNN map
    assert gradcam_panels(fuse_cfg, cohort) == []
    assert re.search(r"Grad-CAM overlays skipped: .*cv1", capsys.readouterr().out)


def test_without_cross_fit_runs_the_single_cnn_is_used_and_said(tmp_path):
    from radfuse.models.module import load_classifier
    from radfuse.stages.common import load_cohort
    from radfuse.stages.fuse_gradcam import gradcam_panels

    manifest, out = small_cohort(tmp_path), tmp_path / "out"
    fuse_cfg = _fuse_cfg(out, manifest, "deep_features=embeddings", "report.train_run=cnn",
                         "report.gradcam_per_class=1", "report.gradcam_layer=layer2")
    cohort = load_cohort(fuse_cfg)  # writes splits.json, which the train run reads
    fold_run(out, "cnn", None, extract_cfg(out, manifest))
    run_dir = out / "train" / "cnn"
    shutil.copy(run_dir / "last.ckpt", run_dir / "best.ckpt")
    mark_complete(run_dir, "train")
    panels = gradcam_panels(fuse_cfg, cohort)
    assert len(panels) == 2 and all("single CNN of train run 'cnn' (best.ckpt)" in p.cnn and
                                    "no cross-fitted fold CNNs" in p.cnn for p in panels)
    model = load_classifier(str(run_dir / "best.ckpt")).eval()
    for panel in panels:
        np.testing.assert_allclose(panel.heat, _expected_cam([model], torch.from_numpy(panel.image)), atol=1e-5)


# ------------------------------------------------------------------------------------------------ the report
CLASSES = ["0", "1"]
FEATURE_SETS = {"rad": ["rad"], "deep": ["deep"], "fused": ["rad", "deep"], "fused+clinical": ["rad", "deep", "clinical"]}


def _inputs():
    manifest = synthetic.simulate_manifest(CLASSES, {"train": 30, "external": 12}, seed=0)
    models = {("rad", "lr"): 0.8, ("deep", "lr"): 1.0, ("fused", "lr"): 1.6, ("fused+clinical", "lr"): 2.0}
    predictions = synthetic.simulate_predictions(manifest, CLASSES, models, seed=1)
    train = manifest.loc[manifest.cohort == "train", "case_id"].iloc[0]
    external = manifest.loc[manifest.cohort == "external", "case_id"].iloc[0]
    rng = np.random.default_rng(0)
    panels = [CamPanel(case, rng.normal(size=(1, 32, 32)), rng.random((32, 32)), cnn, "1", "layer4", "deep")
              for case, cnn in ((train, "fold-1 CNN (train run cv1, last.ckpt), trained without this case's CV fold"),
                                (external, "mean of the Grad-CAMs of the 2 fold CNNs (fold 0: cv0; fold 1: cv1)"))]
    # the deep-only model is selected highest, yet the panels show the best fused model (fused+clinical/lr)
    extras = {"n_resamples": 20, "gradcam": panels, "config": {"feature_sets": FEATURE_SETS},
              "selection": {"rad": {"lr": 0.7}, "deep": {"lr": 0.95}, "fused": {"lr": 0.8},
                            "fused+clinical": {"lr": 0.9}}}
    return manifest, predictions, (train, external), extras


def _drawn(monkeypatch) -> dict:
    """name -> matplotlib Figure of every figure the report embeds from now on."""
    from radfuse.evaluate import html

    drawn, embed = {}, html.FigureSink.embed
    monkeypatch.setattr(html.FigureSink, "embed", lambda self, fig, name, *a, **k: (
        drawn.__setitem__(name, fig), embed(self, fig, name, *a, **k))[1])
    return drawn


def _check_panels(section, figures, predictions, cases, show_case_ids):
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", section)
    figures = {n: f for n, f in figures.items() if n.startswith("gradcam")}
    assert len(captions) == 2 and len(figures) == 2
    rows = predictions[(predictions.feature_set == "fused+clinical") & (predictions.model == "lr")]
    for n, (case, caption, cohort, split, cnn) in enumerate(zip(
            cases, captions, ("train", "external"), ("oof", "refit"), ("fold-1 CNN (train run cv1", "mean of the"))):
        row = rows[(rows.case_id == case) & (rows.split == split)].iloc[0]
        shown = case if show_case_ids else f"case #{n + 1}"
        kind = "out-of-fold" if split == "oof" else "refit model"
        expected = (f"{shown} | true class {row.label} | {cohort} - fused+clinical/lr ({kind}): "
                    f"P(0) {row.prob__0:.3f}, P(1) {row.prob__1:.3f} - Grad-CAM at layer4 for class 1: {cnn}")
        assert caption.startswith(expected), caption
        assert (case in section) == show_case_ids
    for name, fig in figures.items():
        assert any(ax.get_label() == "<colorbar>" for ax in fig.axes), name
        title = fig._suptitle.get_text()
        assert "true class" in title and "fused+clinical/lr" in title and "Grad-CAM at layer4" in title
    return list(figures)


@pytest.mark.parametrize("show_case_ids", [False, True])
def test_report_panels_carry_case_class_probability_cohort_cnn_and_colour_bar(tmp_path, monkeypatch,
                                                                              show_case_ids):
    """Captions and the figures' own titles, colour bars, 300-dpi PNG + PDF files under figures/; no case id
    anywhere in the section unless report.show_case_ids."""
    from radfuse.evaluate.context import ReportContext, select_models
    from radfuse.evaluate.html import FigureSink
    from radfuse.evaluate.report import check_predictions
    from radfuse.evaluate.sections_explain import gradcam_section

    manifest, predictions, cases, extras = _inputs()
    figures = _drawn(monkeypatch)
    ctx = ReportContext(tmp_path, check_predictions(predictions, CLASSES), CLASSES, manifest, [],
                        {**extras, "show_case_ids": show_case_ids}, FigureSink(tmp_path / "figures"))
    ctx.selected = select_models(ctx)
    names = _check_panels(gradcam_section(ctx).render(), figures, predictions, cases, show_case_ids)
    labels = predictions.drop_duplicates("case_id").set_index("case_id").label
    assert names == ([f"gradcam_{c}" for c in cases] if show_case_ids else
                     [f"gradcam_case{n + 1:02d}_class_{labels[c]}" for n, c in enumerate(cases)])
    for name in names:
        with Image.open(tmp_path / "figures" / f"{name}.png") as png:
            assert round(png.info["dpi"][0]) == 300
        assert (tmp_path / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.slow
def test_the_whole_report_lists_the_panels_in_the_figure_index(tmp_path, monkeypatch):
    from radfuse.evaluate.report import build_report

    manifest, predictions, cases, extras = _inputs()
    figures = _drawn(monkeypatch)
    out = tmp_path / "fuse"
    text = build_report(out, predictions, classes=CLASSES, manifest=manifest, extras=extras).read_text("utf-8")
    section = text[text.index('<section id="gradcam">'):]
    names = _check_panels(section[:section.index("</section>")], figures, predictions, cases, False)
    index = pd.read_csv(out / "figures" / "index.csv")
    assert sorted(index.loc[index.section == "Grad-CAM overlays", "file"]) == sorted(
        f"{n}.{ext}" for n in names for ext in ("pdf", "png"))
