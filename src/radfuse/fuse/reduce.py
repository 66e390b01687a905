"""PCA for a deep-feature block, with output names that keep the block prefix (`deep__pc0`, ...)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted


class BlockPCA(PCA):
    """sklearn's PCA (`n_components`: a count, or a float in (0, 1) = fraction of variance to keep) whose
    components are named `<block>__pc<i>` after the prefix of the input columns, so several deep tables can be
    fused without name clashes."""

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "components_")
        names = getattr(self, "feature_names_in_", None)
        first = str(names[0]) if names is not None and len(names) else ""
        prefix = first.split("__", 1)[0] + "__" if "__" in first else ""
        return np.array([f"{prefix}pc{i}" for i in range(self.n_components_)], dtype=object)
