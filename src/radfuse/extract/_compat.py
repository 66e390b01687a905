"""Keep PyRadiomics' optional filters working on current SciPy instead of letting them vanish silently.

PyRadiomics' LBP3D filter imports `scipy.special.sph_harm`, which SciPy 1.17 removed; the filter then only logs a
warning and yields nothing, so a wang2025 run would quietly lose 279 features. We restore the legacy function with
SciPy's own legacy formula (same argument order and conventions), so LBP3D computes what it computed before.
"""

from __future__ import annotations

import numpy as np


def legacy_sph_harm(m, n, theta, phi):  # noqa: ANN001, ANN201 - mirrors SciPy's legacy ufunc signature
    """SciPy < 1.17 `sph_harm(m, n, theta, phi)`: theta azimuthal, phi polar, Condon-Shortley phase included."""
    from scipy.special import lpmv, poch

    m = np.asarray(m)
    n = np.asarray(n)
    order = np.abs(m)
    value = lpmv(order, n, np.cos(phi)).astype(complex)
    # negative orders: P_n^{-m} = (-1)^m (n-m)!/(n+m)! P_n^m, as SciPy's legacy code did
    value = np.where(m < 0, value * (-1.0) ** order * poch(n + order + 1, -2.0 * order), value)
    value = value * np.sqrt((2 * n + 1) / (4 * np.pi)) * np.sqrt(poch(n + m + 1, -2.0 * m))
    return value * np.exp(1j * m * np.asarray(theta))


def install_scipy_compat() -> None:
    """Give `scipy.special` its legacy `sph_harm` back when the installed SciPy lacks it (>= 1.17)."""
    import scipy.special

    if not hasattr(scipy.special, "sph_harm"):
        scipy.special.sph_harm = legacy_sph_harm
