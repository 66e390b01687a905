"""Small fusion setups for tests: tiny grids, few features, one process."""

from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from radfuse.fuse.combat import ComBat
from radfuse.fuse.design import block_table, design_frame
from radfuse.fuse.experiment import FusionSetup
from radfuse.fuse.filters import CorrelationFilter
from radfuse.fuse.lasso import LassoSelector
from radfuse.fuse.reduce import BlockPCA
from radfuse.fuse.search import ClassifierSpec
from tests.fuse.synthetic import make_feature_cohort


def small_lasso():
    return LassoSelector(n_splits=3, n_lambdas=6)


def lr_spec(grid=None):
    return ClassifierSpec("lr", LogisticRegression(class_weight="balanced", max_iter=2000), grid or {"C": [0.1, 1.0]})


def small_setup(classes, feature_sets=None, classifiers=None, **kwargs):
    blocks = {"rad": {"combat": ComBat(), "scale": StandardScaler(), "corr": CorrelationFilter(),
                      "lasso": small_lasso()},
              "deep": {"scale": StandardScaler(), "pca": BlockPCA(n_components=3)}}
    return FusionSetup(classes=classes, blocks=blocks, feature_sets=feature_sets or {"rad": ["rad"]},
                       final={"scale": StandardScaler(), "lasso": small_lasso()},
                       classifiers=classifiers or [lr_spec()], n_splits=3, **kwargs)


def small_design(n_classes=3, **kwargs):
    manifest, tables = make_feature_cohort(n_classes=n_classes, **kwargs)
    return design_frame(manifest, {k: block_table(v, k) for k, v in tables.items()})
