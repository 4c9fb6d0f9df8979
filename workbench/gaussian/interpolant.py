"""A dual kernel at fixed variance as a cheap function of the correlation (the fast path of
deep recursions once every variance has settled on its fixed point: the evaluator's kernels and
the q/c evolution both use it)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.polynomial import chebyshev
from scipy.fft import dct

from workbench.activations import Activation
from workbench.gaussian import expect
from workbench.precision import F64

INTERPOLANT_TOLERANCE = 1e-14
MAX_DEGREE = 512
PANELS = (64, 128, 256, 512)  # panel counts tried in turn (Ṫ of tanh at q = 9.5 needs 128)
PANEL_DEGREE = 12
DOMAIN = (0.0, float(np.pi))
SCALAR_ENTRIES = 16  # up to this many correlations are evaluated as Python floats


def _lobatto(degree: int) -> np.ndarray:
    """The angles of the Chebyshev–Lobatto points x_j = cos(πj/n) mapped to [0, π]."""
    return (1 + np.cos(np.pi * np.arange(degree + 1) / degree)) * (DOMAIN[1] / 2)


class AngleInterpolant:
    """A smooth function of the angle θ ∈ [0, π] (``values``: vectorised θ ↦ values) as one
    Chebyshev series, its degree doubled until the last coefficients fall below
    INTERPOLANT_TOLERANCE of the largest; then re-expanded on PANELS equal panels of low
    degree, checked against the series, so an evaluation costs a few vector operations.
    ``ok`` is False when it did not converge."""

    def __init__(self, values: Callable[[np.ndarray], np.ndarray]) -> None:
        self._values = values
        series = self._series()
        self.panels = None if series is None else self._panels(series)

    def _series(self) -> chebyshev.Chebyshev | None:
        """The series interpolating at the Chebyshev–Lobatto points θ_j = π(1 − cos(πj/n))/2,
        which nest when n doubles: each doubling evaluates only the n new points (the
        first-kind points did not nest: 32 + 64 + 128 integrals where 129 now serve)."""
        degree = 32
        values = self._values(_lobatto(degree))
        while degree <= MAX_DEGREE:
            coef = dct(values, type=1) / degree  # c_k = (2/n) Σ'' f_j cos(πjk/n)
            coef[0] /= 2
            coef[-1] /= 2
            size = np.abs(coef)
            if size[-8:].max() <= INTERPOLANT_TOLERANCE * max(size.max(), 1e-300):
                return chebyshev.Chebyshev(coef, domain=DOMAIN)
            degree *= 2
            fresh = self._values(_lobatto(degree)[1::2])  # the odd points are the new ones
            merged = np.empty(degree + 1, dtype=values.dtype)
            merged[0::2], merged[1::2] = values, fresh
            values = merged
        return None

    def _panels(self, series: chebyshev.Chebyshev) -> np.ndarray | None:
        """Coefficients (panels, PANEL_DEGREE + 1) of per-panel Chebyshev interpolants, for
        the fewest panels of PANELS that reproduce the series to INTERPOLANT_TOLERANCE."""
        nodes = np.cos(np.pi * (np.arange(PANEL_DEGREE + 1) + 0.5) / (PANEL_DEGREE + 1))
        probe = np.linspace(0, DOMAIN[1], 4001)
        scale = max(float(np.abs(series.coef).max()), 1e-300)
        for count in PANELS:
            width = DOMAIN[1] / count
            theta = (np.arange(count)[:, None] + (nodes[None, :] + 1) / 2) * width
            self.panels = chebyshev.chebfit(nodes, series(theta).T, PANEL_DEGREE).T
            if np.abs(self.at(probe) - series(probe)).max() <= INTERPOLANT_TOLERANCE * scale:
                return self.panels
        return None

    def at(self, theta: np.ndarray) -> np.ndarray:
        """The interpolant at angles θ (a 1-d array)."""
        count = len(self.panels)
        position = theta * (count / DOMAIN[1])
        index = np.minimum(position.astype(int), count - 1)
        t = 2 * (position - index) - 1
        coef = self.panels[index]
        b1 = b2 = np.zeros_like(t)
        for k in range(PANEL_DEGREE, 0, -1):  # Clenshaw
            b1, b2 = coef[:, k] + 2 * t * b1 - b2, b1
        return coef[:, 0] + t * b1 - b2

    def at_list(self, theta: list[float]) -> list[float]:
        """``at`` for a few angles as Python floats: the same Clenshaw sums, without numpy's
        ~1 µs per operation on tiny arrays (a 2-input recursion's settled loop evaluates
        3 entries per layer, 10⁵ layers)."""
        rows = self.__dict__.get("_rows")
        if rows is None:
            rows = self._rows = [tuple(row) for row in self.panels.tolist()]
        count, out = len(rows), []
        for angle in theta:
            position = angle * (count / DOMAIN[1])
            index = min(int(position), count - 1)
            t = 2 * (position - index) - 1
            coef = rows[index]
            b1 = b2 = 0.0
            for k in range(PANEL_DEGREE, 0, -1):
                b1, b2 = coef[k] + 2 * t * b1 - b2, b1
            out.append(coef[0] + t * b1 - b2)
        return out

    @property
    def ok(self) -> bool:
        return self.panels is not None


class DualInterpolant(AngleInterpolant):
    """E[f(u₁) g(u₂)] at fixed variances Var u₁ = Var u₂ = q as a function of the
    correlation c, interpolated in the angle θ = arccos c ∈ [0, π] (kinks make it behave
    like (1 ∓ c)^{3/2} at both ends: analytic in θ)."""

    def __init__(self, f: Activation, g: Activation, q: float) -> None:
        self.f, self.g, self.q = f, g, q
        # c = 1 (an input with itself) exactly, not to the interpolant's 1e-14: deep
        # recursions add these diagonal values layer after layer
        self.at_one = float(expect(f, g, q, q, q, F64))
        super().__init__(lambda theta: expect(f, g, q, np.cos(theta) * q, q, F64))

    def __call__(self, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, float)
        if c.size <= SCALAR_ENTRIES:
            flat = c.ravel().tolist()
            values = iter(self.at_list([math.acos(max(x, -1.0)) for x in flat if x < 1.0]))
            return np.array([self.at_one if x >= 1.0 else next(values) for x in flat],
                            dtype=float).reshape(c.shape)  # fmt: skip
        out = self.at(np.arccos(np.clip(c.ravel(), -1.0, 1.0))).reshape(c.shape)
        out[c >= 1.0] = self.at_one
        return out
