"""Bjøntegaard delta metrics (VCEG-M33), the usual one-number summary of two RD curves.

Each curve is fitted with a polynomial of degree 3 (the classic choice; lower when a
curve has only 2 or 3 points) and the area between the fits is averaged over the
quality (or log-rate) interval where both curves have data. numpy's ``Polynomial.fit``
maps that interval to [-1, 1] before fitting, so PSNRs around 40 dB raised to the third
power do not make the least-squares problem ill-conditioned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.polynomial import Polynomial


def _curve(rates: Sequence[float], quality: Sequence[float], label: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (log rate, quality) arrays of one curve, sorted by rate."""
    r = np.asarray(rates, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.size != q.size:
        raise ValueError(f"{label}: {r.size} rates but {q.size} quality values")
    if r.size < 2:
        raise ValueError(f"{label}: need at least 2 RD points, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{label}: rates and quality must be finite")
    if np.any(r <= 0):
        raise ValueError(f"{label}: rates must be positive")
    order = np.argsort(r, kind="stable")
    return np.log(r[order]), q[order]


def _mean_gap(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, axis: str) -> float:
    """Mean of fit2(x) - fit1(x) over the x interval both curves cover."""
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        raise ValueError(f"the two curves' {axis} ranges do not overlap")
    areas = []
    for x, y in ((x1, y1), (x2, y2)):
        antiderivative = Polynomial.fit(x, y, deg=min(3, x.size - 1)).integ()
        areas.append(antiderivative(hi) - antiderivative(lo))
    return float((areas[1] - areas[0]) / (hi - lo))


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """Average rate difference of test vs anchor at equal quality, in percent.

    Negative means the test codec needs fewer bits. Rates may be in any unit (bytes,
    bpp) as long as both curves use the same one; quality is e.g. PSNR in dB.
    """
    lr1, q1 = _curve(anchor_rates, anchor_quality, "anchor")
    lr2, q2 = _curve(test_rates, test_quality, "test")
    return float(np.expm1(_mean_gap(q1, lr1, q2, lr2, "quality")) * 100.0)


def bd_psnr(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """Average quality difference of test vs anchor at equal rate (positive = test better)."""
    lr1, q1 = _curve(anchor_rates, anchor_quality, "anchor")
    lr2, q2 = _curve(test_rates, test_quality, "test")
    return _mean_gap(lr1, q1, lr2, q2, "log-rate")
