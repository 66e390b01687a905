"""Cross-fitted CNN scores: a deep block that a classical model can be fitted on without the CNN's label leak.

A CNN fine-tuned on the training cohort has seen the label of every training case. Its embeddings of those cases
are in-sample: nearly separable, far more so than for any new case. A classical model fitted on them learns to
trust the deep block almost blindly, the out-of-fold AUCs of the training cohort say ~1.0, and model selection
follows them. Cross-fitting removes the leak: one CNN per CV fold k, trained without fold k
(`python train.py -m data.fold=0,1,2,3,4`). A training case of fold k gets the scores of CNN k, which never saw
it; every other case (internal, external, prospective, new ROIs) gets the mean over the K CNNs. The training
cases' scores are then distributed like a new case's, so the classical stage weighs the deep block honestly.

Embeddings cannot be cross-fitted this way: each CNN has its own embedding space, and column j of one is not
column j of another. Class scores share one meaning across CNNs, so the deep block is the centred logits
(`deep__logit_<i>` for class i of `data.classes`; centring removes the softmax's free constant).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from radfuse.artifacts import KEY_COLUMN
from radfuse.data.splits import scoring_folds  # noqa: F401 - the rule cross_fit applies, kept beside it
from radfuse.extract.deep import extract_embeddings

SCORE_LAYER = "logit"


class CentredLogits(nn.Module):
    """A classifier's logits minus their mean over classes, served as the `forward_features` that
    `extract_embeddings` reads (so the same loader, TTA and ordering code serves scores and embeddings)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(x)
        return logits - logits.mean(dim=1, keepdim=True)


def class_scores(classifier: nn.Module, dataloader: Iterable[Mapping], tta: bool = False,
                 device: str | torch.device | None = None) -> pd.DataFrame:
    """One row per ROI: `case_id`, `deep__logit_0` ... `deep__logit_<C-1>` (centred logits, class order)."""
    table = extract_embeddings(CentredLogits(classifier), dataloader, tta=tta, device=device)
    return table.rename(columns=lambda c: c.replace("penultimate_", f"{SCORE_LAYER}_"))


def cross_fit(scores: Mapping[int, pd.DataFrame], fold_of_case: pd.Series, n_folds: int | None = None
              ) -> pd.DataFrame:
    """Combine the score tables of the K fold models into one out-of-fold table.

    scores: fold k -> table of the model trained WITHOUT fold k, with a row for every case.
    fold_of_case: case_id -> CV fold for training-cohort cases, NaN for every other case.
    n_folds: K, the number of folds the models were trained on (default: the folds found in fold_of_case).
    A training case of fold k takes model k's row; every other case the mean of the K models' rows.
    """
    folds = sorted(int(k) for k in scores)
    train_folds = list(range(n_folds)) if n_folds is not None else sorted({int(f) for f in fold_of_case.dropna()})
    if folds != train_folds:
        raise ValueError(f"cross-fitting needs one model per CV fold {train_folds}, got models for folds {folds}: "
                         f"train the missing ones (python train.py -m data.fold={','.join(map(str, train_folds))})")
    tables = {k: scores[k].set_index(KEY_COLUMN) for k in folds}
    columns = tables[folds[0]].columns
    cases = pd.Index(fold_of_case.index.astype(str), name=KEY_COLUMN)
    for k, table in tables.items():
        if list(table.columns) != list(columns):
            raise ValueError(f"the fold-{k} model scores columns {list(table.columns)[:4]}..., fold {folds[0]} "
                             f"{list(columns)[:4]}...: all fold models must be trained on the same classes")
        missing = cases.difference(table.index)
        if len(missing):
            raise ValueError(f"the fold-{k} model has no scores for cases {list(missing[:5])}")
    stacked = np.stack([tables[k].loc[cases, columns].to_numpy(dtype=float) for k in folds])  # [K, N, C]
    combined = stacked.mean(axis=0)
    fold = fold_of_case.to_numpy(dtype=float)
    for i, k in enumerate(folds):
        rows = fold == k
        combined[rows] = stacked[i, rows]
    frame = pd.DataFrame(combined.astype(np.float32), columns=columns)
    frame.insert(0, KEY_COLUMN, list(cases))
    return frame
