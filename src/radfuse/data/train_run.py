"""Reopen a finished train run from its own folder: its crops, classes, cohort and datamodule.

A train run's `config.yaml` is the contract: the crops a network was trained on are those it must see again
(Grad-CAM, embeddings, scoring). This is the one place that turns that file back into objects, in the library
layer, so `models.cam` does not reach up into the train stage, and no caller falls back silently to another
config's crop settings when the run's config lacks one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from radfuse.artifacts import CONFIG_FILE, splits_path
from radfuse.data.crops import CropConfig
from radfuse.data.manifest import CASE_ID, read_manifest
from radfuse.data.splits import Splits, read_splits

CROP_FIELDS = tuple(f.name for f in fields(CropConfig) if f.name != "extra")


def crop_from_settings(data: Mapping[str, Any]) -> CropConfig:
    """CropConfig from a `data` mapping (a config's `data` node): the crop keys it names, defaults for the rest."""
    settings = {k: data[k] for k in CROP_FIELDS if k in data and data[k] is not None}
    if "spacing" in settings:
        settings["spacing"] = tuple(settings["spacing"])
    return CropConfig(**settings)


@dataclass
class TrainRun:
    folder: Path
    config: dict

    @property
    def data(self) -> dict:
        return self.config.get("data") or {}

    @property
    def crop(self) -> CropConfig:
        return crop_from_settings(self.data)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.data.get("classes") or []]

    def manifest_path(self) -> Path:
        if self.data.get("manifest"):
            return Path(self.data["manifest"])
        demo = (self.data.get("demo") or {}).get("dir")
        if not demo:
            raise ValueError(f"{self.folder / CONFIG_FILE} names no manifest (data.manifest) and no demo cohort")
        return Path(demo) / "manifest.csv"

    def frame(self) -> pd.DataFrame:
        """The manifest as the run saw it (connected components expanded when the run did)."""
        frame = read_manifest(self.manifest_path())
        if self.data.get("split_components"):
            from radfuse.data.components import expand_components

            out = Path((self.config.get("paths") or {}).get("out", self.folder.parents[1]))
            frame = expand_components(frame, out / "components", int(self.data.get("min_component_voxels", 10)))
        return frame

    def splits_file(self) -> Path:
        """The split the run trained on: `<paths.out>/splits.json` of its config."""
        return splits_path((self.config.get("paths") or {}).get("out") or self.folder.parents[1])

    def splits(self) -> Splits:
        return read_splits(self.splits_file())

    def datamodule(self, cases: list[str] | None = None):
        """The run's datamodule (no augmentation), optionally limited to some cases (KeyError names unknown ones)."""
        from radfuse.data.datamodule import RadfuseDataModule

        frame = self.frame()
        if cases is not None:
            unknown = sorted(set(cases) - set(frame[CASE_ID].astype(str)))
            if unknown:
                raise KeyError(f"case(s) {unknown} are not in the manifest {self.manifest_path()}")
            frame = frame[frame[CASE_ID].astype(str).isin(cases)]
        paths = self.config.get("paths") or {}
        return RadfuseDataModule(frame, self.splits(), self.crop, paths.get("cache"), self.classes,
                                 batch_size=int(self.data.get("batch_size", 32)),
                                 num_workers=int(self.data.get("num_workers", 0)), fold=self.data.get("fold"),
                                 augment=False)


def reopen_train_run(folder: str | Path) -> TrainRun:
    """The train run in `folder` (its config.yaml); FileNotFoundError naming the folder when it has none."""
    folder = Path(folder)
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"{folder} is not a train run folder ({CONFIG_FILE} missing): train it first "
                                "(python train.py run=<name>)")
    return TrainRun(folder, yaml.safe_load(config.read_text(encoding="utf-8")) or {})
