"""BlockPCA: a count or a variance fraction, names that keep the block prefix."""

import numpy as np
import pandas as pd

from radfuse.fuse.reduce import BlockPCA


def test_variance_fraction_keeps_the_fewest_components_reaching_it_and_names_them_by_block():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 12)) @ np.diag(np.linspace(3, 0.2, 12)),
                     columns=[f"deep_imagenet__avgpool_{i}" for i in range(12)])
    centred = X.to_numpy() - X.to_numpy().mean(axis=0)
    share = np.linalg.svd(centred, compute_uv=False) ** 2
    expected = int(np.searchsorted(np.cumsum(share) / share.sum(), 0.9) + 1)  # by hand, from the SVD
    pca = BlockPCA(n_components=0.9).set_output(transform="pandas").fit(X)
    assert pca.n_components_ == expected
    assert list(pca.transform(X).columns) == [f"deep_imagenet__pc{i}" for i in range(expected)]
    assert list(BlockPCA(n_components=3).fit(X).get_feature_names_out()) == [f"deep_imagenet__pc{i}" for i in range(3)]
