"""A dual kernel at fixed variance as a cheap function of the correlation (the fast path of
deep recursions once every variance has settled on its fixed point: the evaluator's kernels and
the q/c evolution both use it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.polynomial import chebyshev

from workbench.activations import Activation
from workbench.gaussian import expect
from workbench.precision import F64

INTERPOLANT_TOLERANCE = 1e-14
MAX_DEGREE = 512
PANELS = (64, 128, 256, 512)  # panel counts tried in turn (Ṫ of tanh at q = 9.5 needs 128)
PANEL_DEGREE = 12
DOMAIN = (0.0, float(np.pi))


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
        degree = 32
        while degree <= MAX_DEGREE:
            series = chebyshev.Chebyshev.interpolate(self._values, degree, domain=DOMAIN)
            coef = np.abs(series.coef)
            if coef[-8:].max() <= INTERPOLANT_TOLERANCE * max(coef.max(), 1e-300):
                return series
            degree *= 2
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
        out = self.at(np.arccos(np.clip(c.ravel(), -1.0, 1.0))).reshape(c.shape)
        out[c >= 1.0] = self.at_one
        return out
