"""PyRadiomics' GLCM with its heavy steps on a torch device: the optional GPU backend (`extract.backend=torch`).

What runs on the device (CUDA when there is one, else the CPU), in float64 so values stay PyRadiomics' to 1e-6:
- the co-occurrence counts of every angle (PyRadiomics' C `calculate_glcm`): one bincount per angle of the
  (i, j) pairs of ROI voxels that are neighbours along it;
- the coefficients (p_x, p_y, mu_x, mu_y, p_{x+y}, p_{x-y}, HXY), by reductions and scatter-adds;
- MCC's batched eigenvalues of Q = A P^T (the step that dominates a wang2025 GLCM, `fast_glcm`).
Everything else (empty grey levels, symmetry, weighting, normalisation, every feature formula) is the CPU path's
code on the arrays these steps return (PyRadiomics', and `fast_glcm.FastGLCM`'s cluster moments), so a feature
computed here differs from the CPU path only by summation order. The other feature classes (first order, GLRLM, GLSZM, GLDM, NGTDM, shape) and the filters stay on the CPU:
their C kernels are cheap next to GLCM on bone CT (bench/RESULTS.md, "Where the time goes").

Why our own code: no maintained GPU radiomics library reproduces PyRadiomics to 1e-6 (flash-radiomics works in
float32 and differs in first-order and GLCM features; fastrad uses other medians and bin edges: bench/RESULTS.md,
"Side by side with the peers"), and cuRadiomics-style projects are unmaintained.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from radiomics import cMatrices

from radfuse.extract.fast_glcm import FastGLCM


@lru_cache(maxsize=None)
def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: the first CUDA device when there is one, else the CPU; otherwise what torch calls `name`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"extract.device={name!r}, but torch sees no CUDA device here; use extract.device=auto "
                           "(the CPU when no GPU is present) or extract.backend=numpy")
    return device


def _shifted(length: int, step: int) -> tuple[slice, slice]:
    """Slices of an axis for the voxels v and their neighbours v + step that both lie inside it."""
    if step >= 0:
        return slice(0, length - step), slice(step, length)
    return slice(-step, length), slice(0, length + step)


def glcm_counts(image: np.ndarray, mask: np.ndarray, angles: np.ndarray, ng: int,
                device: torch.device) -> torch.Tensor:
    """(1, Ng, Ng, angles) float64 counts on `device`: P[i-1, j-1, a] = #{v in ROI: image[v] = i, v + a in ROI,
    image[v + a] = j}, as PyRadiomics' C `calculate_glcm` (segment-based)."""
    grey = torch.from_numpy(np.array(image, dtype=np.int64)).to(device)  # a copy: radfuse's binned arrays are
    roi = torch.from_numpy(np.array(mask, dtype=bool)).to(device)         # read-only, torch wants writable ones
    counts = torch.zeros((ng * ng, len(angles)), dtype=torch.float64, device=device)
    for a, angle in enumerate(angles):
        here, there = zip(*(_shifted(n, int(s)) for n, s in zip(grey.shape, angle)))
        both = roi[here] & roi[there]
        pairs = (grey[here][both] - 1) * ng + (grey[there][both] - 1)
        counts[:, a] = torch.bincount(pairs, minlength=ng * ng).to(torch.float64)
    return counts.reshape(1, ng, ng, len(angles))


def _sums_by_key(glcm: torch.Tensor, keys: torch.Tensor, first_key: int, n_keys: int) -> torch.Tensor:
    """(Nv, n_keys, angles): sum of p(i, j) over the cells whose key (i + j or |i - j|) is first_key + m."""
    index = keys.to(torch.int64).reshape(-1) - first_key
    valid = (index >= 0) & (index < n_keys)
    flat = glcm.reshape(glcm.shape[0], -1, glcm.shape[3])[:, valid, :]
    out = torch.zeros((glcm.shape[0], n_keys, glcm.shape[3]), dtype=glcm.dtype, device=glcm.device)
    return out.index_add_(1, index[valid], flat)


class TorchGLCM(FastGLCM):
    """radfuse's GLCM class with counts, coefficients and MCC on `device` (module doc); registered per extractor."""

    device = torch.device("cpu")

    def _calculateMatrix(self, voxelCoordinates=None):  # noqa: N802, ANN001, ANN202 - PyRadiomics' hook
        if self.voxelBased:
            return super()._calculateMatrix(voxelCoordinates)
        distances = np.array(self.settings.get("distances", [1]))
        angles = cMatrices.generate_angles(np.array(self.imageArray.shape), distances, False,
                                           self.settings.get("force2D", False),
                                           self.settings.get("force2Ddimension", 0))
        ng = self.coefficients["Ng"]
        counts = glcm_counts(self.imageArray, self.maskArray, angles, ng, self.device)
        present = torch.as_tensor(self.coefficients["grayLevels"].astype(np.int64) - 1, device=self.device)
        counts = counts[:, present][:, :, present]
        if self.symmetricalGLCM:
            counts = counts + counts.transpose(1, 2)
        p_glcm = counts.cpu().numpy()
        return self._weighted_and_normalised(p_glcm, angles)

    def _weighted_and_normalised(self, p_glcm: np.ndarray, angles: np.ndarray) -> np.ndarray:
        """The rest of PyRadiomics' `_calculateMatrix` (BSD-3, radiomics/glcm.py), unchanged."""
        if self.weightingNorm is not None:
            spacing = self.inputImage.GetSpacing()[::-1]
            norms = {"infinity": lambda a: np.exp(-max(np.abs(a) * spacing) ** 2),
                     "euclidean": lambda a: np.exp(-np.sum((np.abs(a) * spacing) ** 2)),
                     "manhattan": lambda a: np.exp(-np.sum(np.abs(a) * spacing) ** 2)}
            weight = norms.get(self.weightingNorm, lambda a: 1.0)
            weights = np.array([weight(a) for a in angles], dtype=float)
            p_glcm = np.sum(p_glcm * weights[None, None, None, :], 3, keepdims=True)
        sums = np.sum(p_glcm, (1, 2))
        if p_glcm.shape[3] > 1:
            empty = np.where(np.sum(sums, 0) == 0)
            if len(empty[0]) > 0:
                p_glcm = np.delete(p_glcm, empty, 3)
                sums = np.delete(sums, empty, 1)
        sums[sums == 0] = np.nan
        p_glcm /= sums[:, None, None, :]
        return p_glcm

    def _calculateCoefficients(self):  # noqa: N802, ANN202 - PyRadiomics' hook
        ng = self.coefficients["Ng"]
        eps = np.spacing(1)
        p = torch.from_numpy(np.array(self.P_glcm)).to(self.device)
        levels = torch.as_tensor(self.coefficients["grayLevels"].astype(float), device=self.device)
        i, j = levels[:, None], levels[None, :]
        k_sum = np.arange(2, (ng * 2) + 1, dtype="float")
        k_diff = np.arange(0, ng, dtype="float")
        ux = torch.sum(i[None, :, :, None] * p, (1, 2), keepdim=True)
        uy = torch.sum(j[None, :, :, None] * p, (1, 2), keepdim=True)
        hxy = -torch.sum(p * torch.log2(p + eps), (1, 2))

        def host(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy()

        self.coefficients.update({
            "eps": eps, "i": host(i), "j": host(j), "kValuesSum": k_sum, "kValuesDiff": k_diff,
            "px": host(p.sum(2, keepdim=True)), "py": host(p.sum(1, keepdim=True)), "ux": host(ux), "uy": host(uy),
            "pxAddy": host(_sums_by_key(p, i + j, 2, len(k_sum))),
            "pxSuby": host(_sums_by_key(p, torch.abs(i - j), 0, len(k_diff))), "HXY": host(hxy)})

    def getMCCFeatureValue(self):  # noqa: N802, ANN201 - PyRadiomics' feature method
        eps = self.coefficients["eps"]
        p = torch.from_numpy(np.array(self.P_glcm)).to(self.device)
        px = torch.from_numpy(np.array(self.coefficients["px"])).to(self.device)
        py = torch.from_numpy(np.array(self.coefficients["py"])).to(self.device)
        weighted = p / (px * py + eps)
        q = torch.matmul(weighted.permute(0, 3, 1, 2), p.permute(0, 3, 2, 1))  # (Nv, angles, Ng_i, Ng_j)
        eigenvalues = np.sort(torch.linalg.eigvals(q).cpu().numpy())  # sorted on the host, as NumPy sorts complex
        if eigenvalues.shape[2] < 2:
            return 1  # flat region, as PyRadiomics
        return np.nanmean(np.sqrt(eigenvalues[:, :, -2]), 1).real


def torch_glcm_class(device: torch.device) -> type[TorchGLCM]:
    """A TorchGLCM bound to `device` (a new class per device: nothing global is changed)."""
    return type(f"TorchGLCM_{device.type}", (TorchGLCM,), {"device": device})
