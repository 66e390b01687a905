"""Learning-rate factors per optimisation step (multiplied onto each parameter group's base rate)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def _warmup(step: int, warmup: int) -> float | None:
    """Linear warm-up: step 0 runs at 1/warmup of the base rate, step warmup-1 at the full rate."""
    return (step + 1) / warmup if step < warmup else None


@dataclass
class WarmupCosine:
    """Linear warm-up then cosine annealing from 1 to `min_lr_ratio` at the last step (Loshchilov & Hutter)."""

    warmup_fraction: float = 0.05
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.0

    def __call__(self, step: int, total_steps: int) -> float:
        warmup = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_fraction * total_steps)
        if (factor := _warmup(step, warmup)) is not None:
            return factor
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class WarmupConstant:
    """Linear warm-up then the base rate."""

    warmup_fraction: float = 0.0
    warmup_steps: int | None = None

    def __call__(self, step: int, total_steps: int) -> float:
        warmup = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_fraction * total_steps)
        factor = _warmup(step, warmup)
        return 1.0 if factor is None else factor
