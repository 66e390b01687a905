import json

import pytest
from omegaconf import OmegaConf

from radfuse.stages.fuse import deep_block_remarks


def _extract_run(folder, source):
    folder.mkdir(parents=True)
    (folder / "deep_penultimate.parquet").write_bytes(b"")
    (folder / "radiomics.parquet").write_bytes(b"")
    OmegaConf.save(OmegaConf.create({"extract": {"deep": {"source": source, "train_run": "r50"}}}),
                   folder / "config.yaml")
    return OmegaConf.create({"tables": {"rad": str(folder / "radiomics.parquet"),
                                        "deep": str(folder / "deep_penultimate.parquet")}})


def test_embeddings_of_a_fine_tuned_checkpoint_are_flagged(tmp_path):
    cfg = _extract_run(tmp_path / "ckpt", "checkpoint")
    cautions = deep_block_remarks(cfg, {"rad": None, "deep": None, "clinical": None}).cautions
    assert len(cautions) == 1 and "block 'deep'" in cautions[0] and "'r50'" in cautions[0]


def test_pretrained_embeddings_and_radiomics_are_not_flagged(tmp_path):
    cfg = _extract_run(tmp_path / "weights", "weights")
    assert deep_block_remarks(cfg, {"rad": None, "deep": None}).cautions == []


def test_cross_fitted_scores_are_not_flagged(tmp_path):
    cfg = _extract_run(tmp_path / "ckpt", "checkpoint")
    crossfit = tmp_path / "ckpt" / "deep_crossfit.parquet"
    crossfit.write_bytes(b"")
    cfg.tables.deep = str(crossfit)
    assert deep_block_remarks(cfg, {"rad": None, "deep": None}).cautions == []


def test_cross_fitted_block_is_described_for_the_report(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "deep_crossfit.parquet").write_bytes(b"")
    crossfit = {"train_runs": "cv", "checkpoint": "last.ckpt"}
    OmegaConf.save(OmegaConf.create({"extract": {"deep": {"source": "checkpoint", "crossfit": crossfit}}}),
                   folder / "config.yaml")
    cfg = OmegaConf.create({"tables": {"rad": str(folder / "radiomics.parquet"),
                                       "deep": str(folder / "deep_crossfit.parquet")}})
    notes = deep_block_remarks(cfg, {"rad": None, "deep": None}).notes
    assert len(notes) == 1 and "Block 'deep'" in notes[0] and "train runs cv" in notes[0]
    assert deep_block_remarks(cfg, {"rad": None}).notes == []  # a block no feature set uses


@pytest.mark.parametrize("source, expected", [
    ({"checkpoint": "best.ckpt", "epoch": 3, "validated_on": "internal cohort",
      "chosen_on_validation": "best.ckpt holds epoch 3 of a run that trained to epoch 19"},
     "The internal cohort chose the CNN's checkpoint"),
    ({"checkpoint": "last.ckpt", "epoch": 19, "validated_on": "internal cohort", "chosen_on_validation": None},
     "chosen by no label"),
    (None, "if it was best.ckpt, the internal cohort chose it"),
])
def test_the_caution_says_whether_the_internal_cohort_chose_the_checkpoint(tmp_path, source, expected):
    """The papers' single-CNN path: when the internal cohort's labels picked the CNN's epoch, the report must not
    tell the reader to judge those models on the internal cohort."""
    cfg = _extract_run(tmp_path / "ckpt", "checkpoint")
    if source is not None:
        (tmp_path / "ckpt" / "deep_sources.json").write_text(json.dumps({"deep_penultimate.parquet": source}))
    caution = deep_block_remarks(cfg, {"rad": None, "deep": None}).cautions[0]
    assert expected in caution
    clean = source is not None and source["chosen_on_validation"] is None
    assert ("judge those models on the internal" in caution) == clean


def test_icc_tables_reach_the_pipeline_as_data_not_as_paths(tmp_path):
    """model.joblib must not carry this machine's paths (issue 18): the ICC filter gets the table itself."""
    import pickle

    import pandas as pd

    from radfuse.fuse.filters import ICCFilter
    from radfuse.stages.fuse import embed_icc_tables

    inter, intra = tmp_path / "icc.parquet", tmp_path / "icc_intra.parquet"
    pd.DataFrame({"feature": ["rad__a"], "icc2_1": [0.9]}).to_parquet(inter)
    pd.DataFrame({"feature": ["rad__a"], "icc2_1": [0.95]}).to_parquet(intra)
    blocks = embed_icc_tables({"rad": {"icc": ICCFilter(str(inter), icc_column="icc2_1"),
                                       "both": ICCFilter([str(inter), str(intra)], icc_column="icc2_1")},
                               "deep": {"scale": None}})
    assert isinstance(blocks["rad"]["icc"].icc_table, pd.DataFrame)
    assert all(isinstance(t, pd.DataFrame) for t in blocks["rad"]["both"].icc_table)
    assert str(tmp_path).encode() not in pickle.dumps(blocks)
    missing = embed_icc_tables({"rad": {"icc": ICCFilter(str(tmp_path / "nope.parquet"))}})
    assert missing["rad"]["icc"].icc_table == str(tmp_path / "nope.parquet")  # the filter's own error stays
