"""Keep PyRadiomics' optional filters working on current SciPy instead of letting them vanish silently.

PyRadiomics' LBP3D filter imports `scipy.special.sph_harm`, which SciPy 1.17 removed; the filter then only logs a
warning and yields nothing, so a wang2025 run would quietly lose 279 features. We restore the legacy function with
SciPy's own legacy formula (same argument order and conventions), so LBP3D computes what it computed before.

The function is lent to `scipy.special` only while an extraction that runs LBP3D is under way
(`legacy_sph_harm_in_scipy`, used around PyRadiomics' `execute` and the requirement check), never for the whole
process: other users of SciPy see SciPy as installed. Overlapping extractions (threads of one Dask worker) share
one loan, returned when the last of them leaves.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator

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


_LOAN_LOCK = threading.Lock()
_borrowers = 0  # extractions inside legacy_sph_harm_in_scipy now


@contextlib.contextmanager
def legacy_sph_harm_in_scipy() -> Iterator[None]:
    """Inside the block `scipy.special.sph_harm` exists: SciPy's own where it has one (< 1.17), else
    `legacy_sph_harm`, removed again when the last overlapping block ends."""
    global _borrowers
    import scipy.special

    with _LOAN_LOCK:
        if _borrowers == 0 and not hasattr(scipy.special, "sph_harm"):
            scipy.special.sph_harm = legacy_sph_harm
        _borrowers += 1
    try:
        yield
    finally:
        with _LOAN_LOCK:
            _borrowers -= 1
            if _borrowers == 0 and scipy.special.__dict__.get("sph_harm") is legacy_sph_harm:
                del scipy.special.sph_harm


def scipy_shims_for(image_types: Iterable[str]) -> contextlib.AbstractContextManager:
    """The shims the configured image types need: LBP3D alone needs one (and scipy.special costs 0.3 s of
    imports, so the others do not load it)."""
    return legacy_sph_harm_in_scipy() if "LBP3D" in image_types else contextlib.nullcontext()
