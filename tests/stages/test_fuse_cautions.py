from omegaconf import OmegaConf

from radfuse.stages.fuse import fine_tuned_deep_cautions


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
    cautions = fine_tuned_deep_cautions(cfg, {"rad": None, "deep": None, "clinical": None})
    assert len(cautions) == 1 and "block 'deep'" in cautions[0] and "'r50'" in cautions[0]


def test_pretrained_embeddings_and_radiomics_are_not_flagged(tmp_path):
    cfg = _extract_run(tmp_path / "weights", "weights")
    assert fine_tuned_deep_cautions(cfg, {"rad": None, "deep": None}) == []
