"""Feature extraction: radiomics (+ ICC) and deep embeddings for every ROI. `python extract.py --help`."""

import hydra
from omegaconf import DictConfig

from radfuse.stages import extract


@hydra.main(version_base="1.3", config_path="conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    extract.run(cfg)


if __name__ == "__main__":
    main()
