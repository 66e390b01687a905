"""LightningDataModule over the manifest: cached deterministic crops, augmentation after the cache.

Every process (DDP ranks, dataloader workers) reads the same on-disk cache, keyed by the crop configuration, so no
rank holds its own in-memory copy of the dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pandas as pd
from monai.data import DataLoader, Dataset

from radfuse.data.crops import CropCacheDataset, CropConfig, crop_pipeline
from radfuse.data.manifest import CASE_ID, COHORT, IMAGE, LABEL, MASK, MASK_LABEL, PATIENT_ID
from radfuse.data.splits import Splits
from radfuse.data.validate import label_str


def manifest_items(frame: pd.DataFrame, classes: list[str]) -> list[dict]:
    """Dataset items of a manifest: paths, ROI label, class index and a file signature for the cache key."""
    index = {str(c): i for i, c in enumerate(classes)}
    items = []
    for _, row in frame.iterrows():
        mask_label = row.get(MASK_LABEL)
        label = label_str(row[LABEL])
        items.append({
            "image": row[IMAGE], "mask": row[MASK],
            "mask_label": None if mask_label is None or pd.isna(mask_label) else int(mask_label),
            "label": index.get(label, -1), "case_id": str(row[CASE_ID]), "patient_id": str(row[PATIENT_ID]),
            # A file rewritten in place must miss the cache: its size and mtime are part of the hashed item.
            "signature": f"{_signature(row[IMAGE])}|{_signature(row[MASK])}",
        })
    return items


def _signature(path: str) -> str:
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def crop_cache_dir(cache_root: str | Path, crop: CropConfig) -> Path:
    """One cache folder per deterministic configuration: a changed crop setting never reads stale crops."""
    return Path(cache_root) / f"crops-{crop.key()}"


def cached_dataset(items: list[dict], crop: CropConfig, cache_root: str | Path | None, augment: bool = False,
                   seed: int = 0) -> Dataset:
    transform = crop_pipeline(crop, augment=augment, seed=seed)
    if cache_root is None:
        return Dataset(items, transform)
    return CropCacheDataset(items, transform, cache_dir=crop_cache_dir(cache_root, crop))


class RadfuseDataModule(L.LightningDataModule):
    def __init__(self, manifest: pd.DataFrame, splits: Splits, crop: CropConfig, cache_dir: str | Path | None,
                 classes: list[str], batch_size: int = 16, num_workers: int = 0, fold: int | None = None,
                 augment: bool = True, seed: int = 0):
        super().__init__()
        self.manifest = manifest.reset_index(drop=True)
        self.splits, self.crop, self.cache_dir = splits, crop, cache_dir
        self.classes = [str(c) for c in classes]
        self.batch_size, self.num_workers, self.fold = batch_size, num_workers, fold
        self.augment, self.seed = augment, seed
        cohorts = splits.cohort_of(self.manifest)
        self.manifest[COHORT] = cohorts
        if cohorts.isna().any():
            missing = self.manifest.loc[cohorts.isna(), CASE_ID].tolist()[:5]
            raise ValueError(f"cases {missing} have no cohort in splits.json: the split is stale, delete it")

    # --------------------------------------------------------------------------------------------- frames
    def frame(self, part: str) -> pd.DataFrame:
        """Rows of 'train', 'val' or any cohort name, honouring the CV fold when one is set."""
        frame, cohort = self.manifest, self.manifest[COHORT]
        if self.fold is None:
            wanted = {"train": cohort == "train", "val": cohort == "internal"}.get(part, cohort == part)
        else:
            fold = self.splits.fold_of(frame)
            wanted = {"train": (cohort == "train") & (fold != self.fold),
                      "val": (cohort == "train") & (fold == self.fold)}.get(part, cohort == part)
        return frame[wanted]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_counts(self) -> list[int]:
        labels = self.frame("train")[LABEL].map(label_str)
        return [int((labels == c).sum()) for c in self.classes]

    @property
    def in_channels(self) -> int:
        return self.crop.in_channels

    @property
    def spatial_dims(self) -> int:
        return self.crop.spatial_dims

    # --------------------------------------------------------------------------------------------- loaders
    def prepare_data(self) -> None:
        """Fill the crop cache once (rank 0 only under DDP); later epochs and ranks read it."""
        if self.cache_dir is not None:
            dataset = cached_dataset(manifest_items(self.manifest, self.classes), self.crop, self.cache_dir)
            for i in range(len(dataset)):
                dataset[i]

    def _loader(self, frame: pd.DataFrame, augment: bool, shuffle: bool) -> DataLoader:
        dataset = cached_dataset(manifest_items(frame, self.classes), self.crop, self.cache_dir, augment, self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, generator=_generator(self.seed) if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.frame("train"), augment=self.augment, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.frame("val"), augment=False, shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        cohorts = [c for c in ("internal", "external", "prospective") if len(self.frame(c))]
        return [self._loader(self.frame(c), augment=False, shuffle=False) for c in cohorts]

    def predict_dataloader(self, cohorts: list[str] | None = None) -> DataLoader:
        frame = self.manifest if cohorts is None else self.manifest[self.manifest[COHORT].isin(cohorts)]
        return self._loader(frame, augment=False, shuffle=False)


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(int(seed))
