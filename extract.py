"""Feature extraction: radiomics (+ ICC) and deep embeddings for every ROI (docs/extract.md)."""

import hydra
from omegaconf import DictConfig

from radfuse.stages import extract
from radfuse.stages.common import exit_on_input_error


@hydra.main(version_base="1.3", config_path="conf", config_name="extract")
@exit_on_input_error
def main(cfg: DictConfig) -> None:
    extract.run(cfg)


if __name__ == "__main__":
    main()
