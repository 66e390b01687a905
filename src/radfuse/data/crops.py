"""Deterministic ROI crops as MONAI dictionary transforms, plus the random augmentation that follows the cache.

Chain: load image + mask (physical space, mask aligned to the image grid) -> select the ROI label -> cut a padded
box around the ROI (so the scan size never bounds the work) -> orient to LPS -> resample to the configured spacing
(B-spline image, nearest mask) -> window -> crop the ROI bounding box + `margin` voxels -> z-score -> 2D largest-
area slice / 2.5D three adjacent slices / 3D cube -> resize -> replicate channels. Everything up to here is
deterministic and cached by `CropCacheDataset` (MONAI's `PersistentDataset` with safe entries: written in the
cache folder and renamed, checked when read); augmentation is applied after the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai import transforms as mt
from monai.data import PersistentDataset
from monai.data.utils import SUPPORTED_PICKLE_MOD
from monai.utils import convert_to_tensor, look_up_option

from radfuse.data import io

log = logging.getLogger(__name__)

# Bump when the deterministic chain changes in a way the config does not show: it is part of the cache key.
CROP_CODE_VERSION = 1

WINDOWS = {  # name -> (width, level) in HU
    "bone_w1500_l500": (1500.0, 500.0),
    "bone_w1200_l500": (1200.0, 500.0),
    "soft_w400_l40": (400.0, 40.0),
}
# Spatial axis of the (z, y, x) LPS array that a slice plane keeps fixed.
SLICE_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
MODES = ("2d", "2.5d", "3d")
# Extra context cut around the ROI before resampling, beyond the margin, so B-spline support stays inside.
CONTEXT_MM = 4.0
AIR_HU = -1024.0
# What a served item holds (bookkeeping keys such as the file signature stay out of batches).
ITEM_KEYS = ("image", "mask", "label", "case_id", "patient_id")


@dataclass(frozen=True)
class CropConfig:
    mode: str = "2d"
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    window: str = "bone_w1500_l500"
    margin: int = 0
    size: int = 64
    axis: str = "sagittal"
    channels: int = 3
    normalize: str = "zscore"          # zscore (per crop, after windowing) | unit (window mapped to [0, 1])
    aspect: str = "pad"                 # pad (to a square/cube before resizing: keeps height loss visible) | stretch
    resample_masks: bool = False        # opt-in nearest resampling of masks on another grid
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"crop mode {self.mode!r}: use one of {MODES}")
        if self.window not in WINDOWS:
            raise ValueError(f"crop window {self.window!r}: use one of {sorted(WINDOWS)}")
        if self.axis not in SLICE_AXES:
            raise ValueError(f"crop axis {self.axis!r}: use one of {sorted(SLICE_AXES)}")
        if self.aspect not in ("pad", "stretch"):
            raise ValueError(f"crop aspect {self.aspect!r}: use pad or stretch")
        if not 0 <= int(self.margin) <= 64:
            raise ValueError(f"crop margin {self.margin} voxels: use 0-64 (the papers use 0-10)")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @property
    def spatial_dims(self) -> int:
        return 3 if self.mode == "3d" else 2

    @property
    def in_channels(self) -> int:
        return 3 if self.mode == "2.5d" else int(self.channels)

    def key(self) -> str:
        """Cache key of the deterministic chain: every setting plus the code version."""
        settings = {k: v for k, v in asdict(self).items() if k != "extra"}
        blob = json.dumps({"v": CROP_CODE_VERSION, **settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- load + resample
class LoadROId(mt.MapTransform):
    """Read `image` and `mask` paths into channel-first (1, z, y, x) arrays on an LPS grid at `spacing`."""

    def __init__(self, crop: CropConfig):
        super().__init__(keys=["image", "mask"])
        self.crop = crop

    def __call__(self, item: dict) -> dict:
        image = io.read_image(item["image"])
        mask = io.align_mask(io.read_image(item["mask"]), image, resample=self.crop.resample_masks)
        roi = io.select_label(mask, item.get("mask_label"))
        image, roi = _cut_around_roi(image, roi, self.crop, item.get("case_id", "?"))
        image, roi = (sitk.DICOMOrient(im, "LPS") for im in (image, roi))
        image = _resample(image, self.crop.spacing, sitk.sitkBSpline, AIR_HU, sitk.sitkFloat32)
        roi = _resample(roi, self.crop.spacing, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        out = dict(item)
        out["image"] = sitk.GetArrayFromImage(image)[None].astype(np.float32)
        out["mask"] = sitk.GetArrayFromImage(roi)[None].astype(np.uint8)
        return out


def _cut_around_roi(image: sitk.Image, roi: sitk.Image, crop: CropConfig, case_id: str):
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(roi)
    if 1 not in stats.GetLabels():
        raise ValueError(f"case {case_id}: the ROI is empty; check mask / mask_label in the manifest")
    box = stats.GetBoundingBox(1)  # (x0, y0, z0, sx, sy, sz) in index space
    spacing = image.GetSpacing()
    context_mm = crop.margin * max(crop.spacing) + CONTEXT_MM
    start, size = [], []
    for axis in range(3):
        pad = int(math.ceil(context_mm / spacing[axis])) + 2
        lo = max(0, box[axis] - pad)
        hi = min(image.GetSize()[axis], box[axis] + box[axis + 3] + pad)
        start.append(lo)
        size.append(hi - lo)
    return (sitk.RegionOfInterest(image, size, start), sitk.RegionOfInterest(roi, size, start))


def _resample(image: sitk.Image, spacing, interpolator, default, pixel_type) -> sitk.Image:
    old_size, old_spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    new_size = [max(1, int(round(n))) for n in old_size * old_spacing / np.array(spacing)]
    return sitk.Resample(image, new_size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                         image.GetDirection(), default, pixel_type)


# ---------------------------------------------------------------------------------------------- slices
class SelectSlicesd(mt.MapTransform):
    """2D: the slice of largest ROI area along `axis`; 2.5D: it and its two neighbours as channels; 3D: all."""

    def __init__(self, mode: str, axis: str):
        super().__init__(keys=["image", "mask"])
        self.mode, self.axis = mode, SLICE_AXES[axis]

    def __call__(self, item: dict) -> dict:
        if self.mode == "3d":
            return item
        out = dict(item)
        mask = np.asarray(item["mask"])[0]
        areas = mask.sum(axis=tuple(a for a in range(3) if a != self.axis))
        centre = int(np.argmax(areas))
        depth = mask.shape[self.axis]
        picks = [centre] if self.mode == "2d" else [max(0, centre - 1), centre, min(depth - 1, centre + 1)]
        for key in ("image", "mask"):
            volume = np.asarray(item[key])[0]
            slices = [np.take(volume, i, axis=self.axis) for i in picks]
            # Axial/coronal/sagittal planes keep z as rows except axial; flip z so superior is at the top.
            stacked = np.stack([s[::-1] if self.axis != 0 else s for s in slices])
            out[key] = np.ascontiguousarray(stacked if key == "image" else stacked[len(picks) // 2: len(picks) // 2 + 1])
        return out


class PadToSquared(mt.MapTransform):
    """Pad the spatial dims to the longest one (centred, window floor) so resizing keeps the ROI's proportions.

    Stretching a crushed vertebra's box to a square would hide exactly the height loss that grades it.
    """

    def __init__(self):
        super().__init__(keys=["image", "mask"])

    def __call__(self, item: dict) -> dict:
        out = dict(item)
        shape = np.asarray(item["image"]).shape[1:]
        side = max(shape)
        pads = [(0, 0)] + [((side - n) // 2, side - n - (side - n) // 2) for n in shape]
        for key in ("image", "mask"):
            out[key] = np.pad(np.asarray(item[key]), pads, mode="constant", constant_values=0)
        return out


def deterministic_transforms(crop: CropConfig) -> list:
    width, level = WINDOWS[crop.window]
    spatial = (crop.size,) * crop.spatial_dims
    chain = [
        LoadROId(crop),
        mt.ScaleIntensityRanged(keys="image", a_min=level - width / 2, a_max=level + width / 2,
                                b_min=0.0, b_max=1.0, clip=True),
        mt.CropForegroundd(keys=["image", "mask"], source_key="mask", margin=int(crop.margin), allow_smaller=True),
        SelectSlicesd(crop.mode, crop.axis),
        *([PadToSquared()] if crop.aspect == "pad" else []),
        mt.Resized(keys=["image", "mask"], spatial_size=spatial, mode=("area", "nearest")),
    ]
    if crop.normalize == "zscore":
        chain.append(mt.NormalizeIntensityd(keys="image"))
    if crop.mode != "2.5d" and crop.channels > 1:
        chain.append(mt.RepeatChanneld(keys="image", repeats=int(crop.channels)))
    chain.append(mt.EnsureTyped(keys=["image", "mask"], dtype=torch.float32, track_meta=False))
    chain.append(mt.SelectItemsd(keys=ITEM_KEYS, allow_missing_keys=True))
    return chain


def augmentation_transforms(crop: CropConfig) -> list:
    """Random augmentation applied after the cache: small affine, noise, intensity jitter."""
    rotate = (0.26,) if crop.spatial_dims == 2 else (0.12, 0.12, 0.12)
    chain = [
        mt.RandAffined(keys=["image", "mask"], prob=0.5, rotate_range=rotate, scale_range=0.1,
                       mode=("bilinear", "nearest"), padding_mode="border"),
        mt.RandGaussianNoised(keys="image", prob=0.3, std=0.05),
        mt.RandScaleIntensityd(keys="image", factors=0.1, prob=0.3),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.3),
        mt.EnsureTyped(keys=["image", "mask"], dtype=torch.float32, track_meta=False),
    ]
    return chain


def crop_pipeline(crop: CropConfig, augment: bool = False, seed: int = 0) -> mt.Compose:
    chain = deterministic_transforms(crop) + (augmentation_transforms(crop) if augment else [])
    composed = mt.Compose(chain)
    if augment:
        composed.set_random_state(seed=seed)
    return composed


# ---------------------------------------------------------------------------------------------- on-disk cache
class CropCacheDataset(PersistentDataset):
    """`PersistentDataset` (same entry names, so existing caches stay valid) whose entries are safe.

    MONAI writes an entry in a temporary folder and moves it into the cache: across file systems (a /tmp on tmpfs)
    that move is a copy, and a killed run leaves a truncated `.pt` that every later run fails on with an error
    naming no file. Here an entry is written to a temporary file in the cache folder itself and renamed onto its
    name (atomic on any file system); an entry that does not load is named in a warning, discarded and recomputed.
    """

    def _cachecheck(self, item_transformed):
        if self.cache_dir is None:
            return self._pre_transform(deepcopy(item_transformed))
        entry = Path(self.cache_dir) / f"{self.hash_func(item_transformed).decode('utf-8')}{self.transform_hash}.pt"
        if entry.is_file():
            cached = self._load(entry)
            if cached is not None:
                return cached
            case = item_transformed.get("case_id", "?") if isinstance(item_transformed, dict) else "?"
            log.warning("crop cache entry %s for case %s is damaged; recomputing", entry, case)
            with contextlib.suppress(FileNotFoundError):  # another process may have discarded it already
                entry.unlink()
        computed = self._pre_transform(deepcopy(item_transformed))  # keep the original hashed
        self._store(entry, computed)
        return computed

    def _load(self, entry: Path):
        """The cached item, or None when the file is damaged (truncated, empty, not a saved item)."""
        try:
            cached = torch.load(entry, weights_only=self.weights_only)
        except PermissionError:
            raise
        except Exception:  # noqa: BLE001 - whatever a damaged file raises (OSError, EOFError, RuntimeError, ...)
            return None
        if isinstance(cached, dict) and not all(k in cached for k in ("image", "mask")):
            return None
        return cached

    def _store(self, entry: Path, item) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent)
        os.close(fd)
        try:
            # through a file object: torch.save to a path names the archive inside after the (random) temporary
            # file, so two runs' entries would differ in bytes; a file object gives the fixed name "archive"
            with open(tmp, "wb") as handle:
                torch.save(convert_to_tensor(item, convert_numeric=False, track_meta=self.track_meta), handle,
                           pickle_module=look_up_option(self.pickle_module, SUPPORTED_PICKLE_MOD),
                           pickle_protocol=self.pickle_protocol)
            os.replace(tmp, entry)  # concurrent writers (DDP ranks, loader workers) write identical items
        except PermissionError:  # a read-only cache: serve the item without caching it (as MONAI does)
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
