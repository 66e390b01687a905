"""Fine-tune a 2D/3D CNN on ROI crops: `python train.py [group=option ...]` (docs/train.md)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from radfuse.stages.study import expand_argv


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from radfuse.stages.train import run_or_exit  # imported here so `--help` and config errors stay fast

    return run_or_exit(cfg)


if __name__ == "__main__":
    expand_argv("train", Path(__file__).resolve().parent / "conf")  # experiment=<study preset>: its train groups
    main()
