"""Feature extraction: radiomics (+ ICC) and deep embeddings for every ROI (docs/extract.md)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from radfuse.stages.study import expand_argv

from radfuse.stages import extract
from radfuse.stages.common import exit_on_input_error


@hydra.main(version_base="1.3", config_path="conf", config_name="extract")
@exit_on_input_error
def main(cfg: DictConfig) -> None:
    extract.run(cfg)


if __name__ == "__main__":
    expand_argv("extract", Path(__file__).resolve().parent / "conf")  # experiment=<study preset>: its extract groups
    main()
