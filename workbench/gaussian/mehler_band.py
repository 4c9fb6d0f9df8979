"""Mehler coefficient rows interpolated in the variance, for variances that walk slowly.

A deep block whose variances converge on their fixed point at a rate close to one (swish at
σ_w² = 2, σ_b² = 0.5: χ_q ≈ 0.99, ~3300 passes before they settle) asks for the Hermite
coefficients a_k(q) (mehler.py) at a new q every pass: a matrix product against the whole
node table, about a millisecond per activation and pass. The rows are analytic in q > 0, so
once WALK_CALLS requests in a row fall into one narrow window, the rows are sampled at
Chebyshev points of a band around the window, widened in the walk's direction, and served
from then on as Chebyshev series in q (microseconds). E[f²] is not interpolated: the caller
computes it directly, so the variances walk exactly as without bands and settle on the same
fixed point.

A band vouches for itself before it serves. The dual kernel's error from coefficient errors
δ_k is at most 2 Σ_k |a_k| |δ_k| at any correlation in [−1, 1], so that weighted sum is what
is bounded, relative to E[f²]: for the series' last coefficients (doubling the degree up to
MAX_DEGREE) and for the series against a direct computation at an off-node point. Otherwise
the activation stays on the direct rule (and waits longer before the next try). Measured on
swish and its derivative, the same sum between two direct computations (their rounding)
is 1e-15 to 6e-15, so TOLERANCE asks the series to be as good as the direct rule, not better;
the dual kernel's error this bounds is a worst case (signs aligned over ~300 terms).
Measured on the 3300-pass swish block above, bands against direct rows throughout: NNGP
9e-15, NTK 2.4e-13 relative (the NTK sums every pass's difference)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from workbench.activations import Activation

WALK_CALLS = 24  # direct requests in a row inside one window before a band is built
WINDOW = 1.5  # the largest max/min ratio of the requested variances counted as one window
REACH = 4.0  # the band extends this many window spans ahead of the walk (and one behind)
TOLERANCE = 1e-14  # Σ_k |a_k| |δ_k| relative to E[f²] (direct rows' own noise: 1e-15-6e-15)
START_DEGREE, MAX_DEGREE = 16, 128
BANDS_KEPT = 4  # bands kept per activation (the newest)
KEPT = 8  # served answers kept

Rows = tuple[np.ndarray, np.ndarray]  # (a[i, k], E[f(u_i)²])


class Band:
    """The rows of one activation as Chebyshev series in q over [lo, hi]."""

    def __init__(self, lo: float, hi: float, series: np.ndarray) -> None:
        self.lo, self.hi, self.series = lo, hi, series  # series: (degree + 1, terms)

    def covers(self, q: np.ndarray) -> bool:
        return bool(q.min() >= self.lo and q.max() <= self.hi)

    def rows(self, q: np.ndarray) -> np.ndarray:
        """a[i, k] at the variances q (inside the band)."""
        a = chebyshev.chebval((2 * q - (self.lo + self.hi)) / (self.hi - self.lo), self.series).T
        a.flags.writeable = False
        return a


class Walks:
    """Per activation: the recent direct requests and the bands built from them."""

    def __init__(self) -> None:
        self.recent: dict[Activation, deque] = {}
        self.bands: dict[Activation, list[Band]] = {}
        self.failed: dict[Activation, int] = {}  # bands that did not vouch: wait longer
        self.kept: dict = {}  # the last few served answers (a layer asks twice for each)

    def keep(self, key: tuple, found: Any) -> Any:
        if len(self.kept) >= KEPT:
            self.kept.pop(next(iter(self.kept)))
        self.kept[key] = found
        return found

    def serve(self, f: Activation, q: np.ndarray) -> np.ndarray | None:
        for band in self.bands.get(f, ()):
            if band.covers(q):
                return band.rows(q)
        return None

    def record(self, f: Activation, q: np.ndarray, direct: Callable[..., Rows | None]) -> None:
        """Note a direct request (once: a repeat of the last is not counted); build a band
        when the last WALK_CALLS (more after a band that failed) form a slow walk.
        ``direct(q, terms)`` gives rows of at least ``terms`` columns (as many as every row
        needs), or None."""
        wanted = WALK_CALLS << min(self.failed.get(f, 0), 8)
        recent = self.recent.setdefault(f, deque())
        window = (float(q.min()), float(q.max()))
        if recent and recent[-1] == window:  # the same rows asked again (a layer's gap)
            return
        recent.append(window)
        while len(recent) > wanted:
            recent.popleft()
        if len(recent) < wanted:
            return
        lo, hi = min(r[0] for r in recent), max(r[1] for r in recent)
        if not (lo > 0 and hi > lo and hi / lo <= WINDOW):
            return
        rising = sum(recent[-1]) >= sum(recent[0])
        recent.clear()
        span = hi - lo
        ahead, behind = REACH * span, span
        band = _build(max(lo - (behind if rising else ahead), lo / WINDOW),
                      min(hi + (ahead if rising else behind), hi * WINDOW), direct)  # fmt: skip
        if band is None:
            self.failed[f] = self.failed.get(f, 0) + 1
        else:
            self.bands[f] = [*self.bands.get(f, [])[-(BANDS_KEPT - 1) :], band]


def _build(lo: float, hi: float, direct: Callable[..., Rows | None]) -> Band | None:
    """The band over [lo, hi], or None where its series do not vouch for themselves."""
    degree = START_DEGREE
    while degree <= MAX_DEGREE:
        sampled: list[Rows] = []

        def rows_at(x: np.ndarray, sampled: list[Rows] = sampled) -> np.ndarray:
            found = direct(lo + (hi - lo) * (x + 1) / 2, 0)
            if found is None:
                raise _Declined
            sampled.append(found)
            return found[0]

        try:  # at Chebyshev points: a discrete cosine transform, no least squares
            series = chebyshev.chebinterpolate(rows_at, degree)
        except _Declined:
            return None
        a, norm2 = sampled[0]
        weight = np.abs(a).max(axis=0)  # the dual's error is at most 2 Σ_k |a_k| |δ_k|
        room = TOLERANCE * norm2.min()
        if (np.abs(series[-3:]) @ weight).max() <= room:
            band = Band(lo, hi, series)
            probe = np.array([lo + (hi - lo) * 0.3819660112501051])  # off every point set
            check = direct(probe, series.shape[1])
            if check is None:
                return None
            error = np.abs(check[0][0, : series.shape[1]] - band.rows(probe)[0]) @ weight
            return band if error <= room else None
        degree *= 2
    return None


class _Declined(Exception):
    """The direct rule declined a point of the band."""
