"""A tiny in-memory DataModule with the radfuse batch format (image, label, case_id, patient_id)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


class BlobDataset(Dataset):
    """Class k = a bright blob in quadrant k, plus noise: learnable in a few steps."""

    def __init__(self, n: int, num_classes: int, spatial_dims: int, size: int, channels: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % num_classes
        shape = (n, channels) + (size,) * spatial_dims
        self.images = torch.randn(shape, generator=gen) * 0.5
        half = size // 2
        for i, label in enumerate(self.labels.tolist()):
            rows = slice(0, half) if label % 2 == 0 else slice(half, size)
            cols = slice(0, half) if label < 2 else slice(half, size)
            self.images[(i, slice(None), Ellipsis, rows, cols)] += 2.0
        self.case_ids = [f"case-{seed}-{i:03d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "case_id": self.case_ids[i],
                "patient_id": f"p{i}"}


class TinyDataModule(L.LightningDataModule):
    def __init__(self, spatial_dims: int = 2, size: int = 32, channels: int = 1, num_classes: int = 3,
                 n_train: int = 24, n_val: int = 12, batch_size: int = 8) -> None:
        super().__init__()
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, channels, num_classes
        self.train_set = BlobDataset(n_train, num_classes, spatial_dims, size, channels, seed=1)
        self.val_set = BlobDataset(n_val, num_classes, spatial_dims, size, channels, seed=2)
        self.batch_size = batch_size
        self.class_counts = torch.bincount(self.train_set.labels, minlength=num_classes).tolist()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)
