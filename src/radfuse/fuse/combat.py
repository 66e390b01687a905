"""ComBat harmonisation (Johnson, Li & Rabinovic 2007, parametric empirical Bayes) as a scikit-learn transformer.

The site and the covariates travel as *non-feature* columns of the input DataFrame (see `radfuse.fuse.design`):
`fit` learns the location/scale model from the training rows only, `transform` consumes those columns and
returns the harmonised feature columns alone, so nothing downstream ever sees them as features.

Unseen sites (a site absent from the training folds, e.g. an external centre): with `unseen_site="estimate"`
(default) the site's own location/scale batch effect is estimated from the rows of that site in the batch being
transformed, with the same empirical-Bayes shrinkage ComBat applies to every site, while everything learned from
training (grand mean, pooled variance, covariate effects) stays fixed. It uses no label and needs at least
`min_unseen_rows` rows of that site in one call; fewer is an error. `"error"` refuses unseen sites outright;
`"reference"` leaves their batch effect in place (location 0, scale 1: the site is treated as the average site).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

UNSEEN_SITE_POLICIES = ("estimate", "error", "reference")


@dataclass
class _SiteEffect:
    gamma_star: np.ndarray  # location, in pooled-SD units, one per feature
    delta_star: np.ndarray  # scale (variance ratio), one per feature


class ComBat(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Parametric EB ComBat on the `site_column` of a DataFrame; `covariates` are preserved effects (never the label).

    Numeric covariates enter the design as they are; non-numeric ones as dummies (first level dropped), as in
    neuroCombat. Only the feature columns (all columns except site and covariates) are returned.
    """

    def __init__(self, site_column: str = "meta__site", covariates: tuple[str, ...] | list[str] = (),
                 unseen_site: str = "estimate", min_unseen_rows: int = 2, tol: float = 1e-4):
        self.site_column = site_column
        self.covariates = covariates
        self.unseen_site = unseen_site
        self.min_unseen_rows = min_unseen_rows
        self.tol = tol

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y=None) -> "ComBat":
        features, sites = self._split(X, fitting=True)
        self.sites_ = np.array(sorted(pd.unique(sites)), dtype=object)
        if len(self.sites_) < 2:
            raise ValueError(f"ComBat needs at least 2 sites in the training data, got {list(self.sites_)}; "
                             "drop the combat step (blocks.rad.combat=null, or the block that holds it) for "
                             "single-site data")
        counts = pd.Series(sites).value_counts()
        if (counts < 2).any():
            raise ValueError(f"ComBat needs at least 2 training rows per site; sites {list(counts[counts < 2].index)} "
                             "have 1: merge them with a similar site or drop the combat step")
        self.covariate_levels_ = {c: _levels(X[c]) for c in self.covariates}
        batch = _one_hot(sites, self.sites_)
        design = np.hstack([batch, self._covariate_design(X)])
        data = features.to_numpy(dtype=float)
        beta = np.linalg.lstsq(design, data, rcond=None)[0]  # (n_design, n_features)
        n_site = len(self.sites_)
        self.grand_mean_ = (counts.reindex(self.sites_).to_numpy() / len(data)) @ beta[:n_site]
        self.covariate_beta_ = beta[n_site:]
        var = ((data - design @ beta) ** 2).mean(axis=0)
        var[var == 0] = np.median(var[var != 0]) if (var != 0).any() else 1.0  # constant features: avoid 0/0
        self.var_pooled_ = var
        standardised = self._standardise(data, X)
        self.site_effects_ = {s: _eb_site_effect(standardised[sites == s], self.tol) for s in self.sites_}
        return self

    # ------------------------------------------------------------------ transform
    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "site_effects_")
        features, sites = self._split(X, fitting=False)
        standardised = self._standardise(features.to_numpy(dtype=float), X)
        adjusted = np.empty_like(standardised)
        for site in pd.unique(sites):
            rows = sites == site
            effect = self._effect_for(site, standardised[rows])
            adjusted[rows] = (standardised[rows] - effect.gamma_star) / np.sqrt(effect.delta_star)
        out = adjusted * np.sqrt(self.var_pooled_) + self.grand_mean_ + self._covariate_design(X) @ self.covariate_beta_
        return pd.DataFrame(out, columns=self.feature_names_in_, index=features.index)

    def _effect_for(self, site: object, standardised: np.ndarray) -> _SiteEffect:
        if site in self.site_effects_:
            return self.site_effects_[site]
        if self.unseen_site == "error":
            raise ValueError(f"site {site!r} was not in the ComBat training data (sites {list(self.sites_)}); "
                             "set unseen_site='estimate' or 'reference', or add that site's cases to training")
        if self.unseen_site == "reference":
            return _SiteEffect(np.zeros(standardised.shape[1]), np.ones(standardised.shape[1]))
        if len(standardised) < self.min_unseen_rows:
            raise ValueError(f"site {site!r} is new to ComBat and has only {len(standardised)} row(s) in this batch; "
                             f"'estimate' needs >= {self.min_unseen_rows}: score that site's cases together, "
                             "or use unseen_site='reference'")
        return _eb_site_effect(standardised, self.tol)

    # ------------------------------------------------------------------ helpers
    def _split(self, X: pd.DataFrame, fitting: bool) -> tuple[pd.DataFrame, np.ndarray]:
        if not isinstance(X, pd.DataFrame) or self.site_column not in X.columns:
            raise ValueError(f"ComBat needs a DataFrame with the site column {self.site_column!r}; "
                             "build the input with radfuse.fuse.design.design_frame")
        if self.unseen_site not in UNSEEN_SITE_POLICIES:
            raise ValueError(f"unseen_site={self.unseen_site!r}; choose one of {UNSEEN_SITE_POLICIES}")
        missing = [c for c in self.covariates if c not in X.columns]
        if missing:
            raise ValueError(f"ComBat covariate column(s) {missing} are missing from the input")
        sites = X[self.site_column].to_numpy(dtype=object)
        if pd.isna(sites).any():
            raise ValueError(f"{int(pd.isna(sites).sum())} row(s) have no site in {self.site_column!r}; fill the "
                             "manifest's site column")
        features = X.drop(columns=[self.site_column, *self.covariates])
        if fitting:
            self.feature_names_in_ = np.asarray(features.columns, dtype=object)
            self.n_features_in_ = features.shape[1]
        elif list(features.columns) != list(self.feature_names_in_):
            raise ValueError("ComBat: the feature columns differ from those seen in fit")
        return features, sites

    def _standardise(self, data: np.ndarray, X: pd.DataFrame) -> np.ndarray:
        mean = self.grand_mean_ + self._covariate_design(X) @ self.covariate_beta_
        return (data - mean) / np.sqrt(self.var_pooled_)

    def _covariate_design(self, X: pd.DataFrame) -> np.ndarray:
        blocks = [np.zeros((len(X), 0))]
        for column, levels in self.covariate_levels_.items():
            if levels is None:
                blocks.append(X[column].to_numpy(dtype=float)[:, None])
            else:
                blocks.append(_one_hot(X[column].to_numpy(dtype=object), levels)[:, 1:])
        return np.hstack(blocks)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        return self.feature_names_in_.copy()


def _levels(column: pd.Series) -> np.ndarray | None:
    """None for a numeric covariate, else its sorted levels (first = reference)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return None
    return np.array(sorted(pd.unique(column.astype(str))), dtype=object)


def _one_hot(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Indicator matrix of `values` against `levels`, compared as strings (sites may be ints or names)."""
    as_text = pd.Series(values).astype(str).to_numpy()
    return (as_text[:, None] == np.asarray(levels).astype(str)[None, :]).astype(float)


def _eb_site_effect(standardised: np.ndarray, tol: float) -> _SiteEffect:
    """Johnson 2007 parametric EB: shrink this site's per-feature mean/variance towards priors pooled over features."""
    gamma_hat = standardised.mean(axis=0)
    delta_hat = standardised.var(axis=0, ddof=1)
    delta_hat[delta_hat == 0] = 1.0
    gamma_bar, tau2 = gamma_hat.mean(), gamma_hat.var(ddof=1)
    mean_d, var_d = delta_hat.mean(), delta_hat.var(ddof=1)
    a_prior = (2 * var_d + mean_d**2) / var_d
    b_prior = (mean_d * var_d + mean_d**3) / var_d
    n = len(standardised)
    gamma_old, delta_old = gamma_hat.copy(), delta_hat.copy()
    for _ in range(10_000):  # fixed-point iteration of the conditional posterior means, stopped as in sva/neuroCombat
        gamma_new = (tau2 * n * gamma_hat + delta_old * gamma_bar) / (tau2 * n + delta_old)
        sum2 = ((standardised - gamma_new) ** 2).sum(axis=0)
        delta_new = (0.5 * sum2 + b_prior) / (n / 2.0 + a_prior - 1.0)
        # signed denominator, exactly as sva's R code and neuroCombat (a negative gamma never blocks stopping)
        change = max(np.max(np.abs(gamma_new - gamma_old) / gamma_old),
                     np.max(np.abs(delta_new - delta_old) / delta_old))
        gamma_old, delta_old = gamma_new, delta_new
        if not change > tol:  # `not >` also stops on NaN, exactly like neuroCombat's `while change > conv`
            break
    return _SiteEffect(gamma_new, delta_new)
