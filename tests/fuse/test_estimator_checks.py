"""scikit-learn's estimator contract for the custom steps that take plain arrays (ComBat needs a site column
and is checked in test_combat.py)."""

from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from radfuse.fuse.balance import ClassBalanced
from radfuse.fuse.filters import CorrelationFilter, ICCFilter
from radfuse.fuse.lasso import LassoSelector
from radfuse.fuse.reduce import BlockPCA

ESTIMATORS = [
    ICCFilter(keep_missing=True),
    CorrelationFilter(),
    LassoSelector(n_splits=3, n_lambdas=4, max_iter=200),
    BlockPCA(n_components=2),
    ClassBalanced(LogisticRegression()),
    ClassBalanced(KNeighborsClassifier(n_neighbors=3), strategy="resample"),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_contract(estimator, check):
    check(estimator)
