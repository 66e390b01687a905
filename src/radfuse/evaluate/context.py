"""What every report section reads: the predictions, the metrics computed once, and where outputs go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radfuse.evaluate import metrics
from radfuse.evaluate.html import FigureSink


def model_label(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class ReportContext:
    run_dir: Path
    predictions: pd.DataFrame
    classes: list[str]
    manifest: pd.DataFrame | None
    clinical: list[str]
    extras: dict
    figures: FigureSink
    n_resamples: int = 1000
    seed: int = 0
    model_metrics: dict[str, dict] = field(default_factory=dict)
    selected: list[tuple[str, str]] = field(default_factory=list)
    out: dict = field(default_factory=dict)  # becomes metrics.json

    def sets(self, key: tuple[str, str]) -> dict[str, pd.DataFrame]:
        return metrics.evaluation_sets(metrics.model_rows(self.predictions, *key))

    def arrays(self, frame: pd.DataFrame) -> metrics.CaseArrays:
        return metrics.CaseArrays.from_rows(frame, self.classes)

    def macro_auc(self, key: tuple[str, str], set_name: str) -> float:
        entry = self.model_metrics[model_label(key)]["sets"].get(set_name, {})
        value = entry.get("overall", {}).get("macro_auc", {}).get("estimate")
        return -np.inf if value is None else value

    def selection_score(self, key: tuple[str, str]) -> float:
        """The fitting stage's selection criterion for a model (extras['selection'][feature set][model]: its mean
        CV-fold macro AUC), else, for a predictions table evaluated on its own, the pooled out-of-fold macro AUC."""
        value = (self.extras.get("selection") or {}).get(key[0], {}).get(key[1])
        return float(value) if value is not None else self.macro_auc(key, metrics.OOF_SET)

    def blocks_of(self, feature_set: str) -> list[str]:
        """The blocks a feature set joins (config['feature_sets']); without a config, 'a+b' names its blocks and a
        set called 'fused...' is taken as a fusion of unnamed blocks."""
        given = ((self.extras.get("config") or {}).get("feature_sets") or {}).get(feature_set)
        if given:
            return [str(b) for b in given]
        if "+" in feature_set:
            return feature_set.split("+")
        return [feature_set, "?"] if feature_set.startswith("fused") else [feature_set]

    def score_name(self, feature_set: str) -> str:
        """'Rad-score' for the radiomics block alone; else the set's name ('DTL score', 'fused score')."""
        if self.blocks_of(feature_set) in (["rad"], ["radiomics"]):
            return "Rad-score"
        return f"{feature_set.upper() if len(feature_set) <= 3 else feature_set} score"

    def has_clinical(self, feature_set: str) -> bool:
        return any(b == "clinical" for b in self.blocks_of(feature_set)) or "clinical" in feature_set

    def is_fused(self, feature_set: str) -> bool:
        return len(self.blocks_of(feature_set)) > 1

    @property
    def selection_rule(self) -> str:
        return self.extras.get("selection_rule") or (
            "Best model per feature set by pooled out-of-fold macro AUC on the training cohort (no fitting stage's "
            "selection was given).")


def select_models(ctx: ReportContext) -> list[tuple[str, str]]:
    """Best model per feature set by the selection rule (the training data's choice, never a test set's).

    The fitting stage names its own winners (extras['winners'] = {feature_set: model}, chosen by the rule it
    states in extras['selection_rule']); without them, the pooled out-of-fold macro AUC decides; without
    out-of-fold rows every model is kept, in table order.
    """
    keys = metrics.model_keys(ctx.predictions)
    winners = [(str(fs), str(m)) for fs, m in (ctx.extras.get("winners") or {}).items()]
    if winners:
        unknown = [w for w in winners if w not in keys]
        if unknown:
            raise ValueError(f"extras['winners'] names {unknown}, absent from the predictions' (feature_set, model) "
                             f"pairs {keys}")
        return winners
    if not any(metrics.OOF_SET in ctx.sets(k) for k in keys):
        return keys
    best: dict[str, tuple[str, str]] = {}
    for key in keys:
        if key[0] not in best or ctx.selection_score(key) > ctx.selection_score(best[key[0]]):
            best[key[0]] = key
    return list(best.values())
