"""python fuse.py [key=value ...]: harmonise, select, fuse and classify extracted features (docs/fuse.md)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from radfuse.stages.study import expand_argv

from radfuse.stages import fuse
from radfuse.stages.common import exit_on_input_error


@hydra.main(version_base="1.3", config_path="conf", config_name="fuse")
@exit_on_input_error
def main(cfg: DictConfig) -> None:
    fuse.run(cfg)


if __name__ == "__main__":
    expand_argv("fuse", Path(__file__).resolve().parent / "conf")  # experiment=<study preset>: its fuse groups
    main()
