"""Prepare: make or read the cohort, validate it, split it and fill the crop cache; print a summary. What it read
is recorded in `<out>/prepare/{config.yaml, provenance.json}`."""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from radfuse.artifacts import prepare_dir, splits_path
from radfuse.data.datamodule import RadfuseDataModule, crop_cache_dir
from radfuse.data.manifest import COHORT, LABEL, SITE
from radfuse.data.validate import label_str
from radfuse.stages.common import crop_config, exit_on_input_error, load_cohort, save_run_config
from radfuse.stages.study import CONF_DIR, expand_argv


def run(cfg: DictConfig) -> RadfuseDataModule:
    start = time.perf_counter()
    cohort = load_cohort(cfg, make_demo=True)  # the stage that makes the demo cohort
    crop = crop_config(cfg.data)
    frame = cohort.frame.assign(**{COHORT: cohort.splits.cohort_of(cohort.frame)})
    print(f"[radfuse] manifest {cohort.manifest_path}: {len(frame)} ROIs, {frame.patient_id.nunique()} patients, "
          f"valid", flush=True)
    table = frame.assign(label=frame[LABEL].map(label_str)).pivot_table(
        index=COHORT, columns=LABEL, values="case_id", aggfunc="count", fill_value=0)
    print(f"[radfuse] ROIs per cohort and class:\n{table.to_string()}", flush=True)
    if SITE in frame.columns:
        print(f"[radfuse] sites: {frame[SITE].value_counts().sort_index().to_dict()}", flush=True)
    dm = RadfuseDataModule(cohort.frame, cohort.splits, crop, cfg.paths.cache, cohort.classes)
    dm.prepare_data()
    save_run_config(cfg, prepare_dir(cfg.paths.out), {"manifest": cohort.manifest_path,
                                                      "splits": splits_path(cfg.paths.out)})
    print(f"[radfuse] crop cache ({crop.mode}, {crop.size} px, margin {crop.margin}) ready in "
          f"{crop_cache_dir(cfg.paths.cache, crop)}; took {time.perf_counter() - start:.1f} s", flush=True)
    return dm


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prepare")
@exit_on_input_error
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    expand_argv("prepare", CONF_DIR)  # experiment=<study preset>: its prepare groups
    main()
