"""The batch-norm expectations (trapezoid in log t) against independent routes: 30-digit
mpmath quadrature of the same Laplace integral, and the exact identity tr E[zzᵀ/‖z‖²] = 1."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from workbench.gaussian.batch import expect_inverse_norm, expect_normalized_outer


def _covariance(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n)) * np.exp(rng.uniform(-6, 3, n))  # condition numbers ~1e8
    return b @ b.T / n


@pytest.mark.parametrize("seed", range(4))
def test_inverse_norm_matches_30_digit_quadrature(seed):
    cov = _covariance(seed, 8)
    lam = np.clip(np.linalg.eigvalsh(cov), 0, None)
    with mp.workdps(30):
        mass = lambda t: mp.fprod((1 + 2 * t * mp.mpf(float(v))) ** -0.5 for v in lam)  # noqa: E731
        exact = mp.quad(mass, [0, 1e-6, 1e-3, 1, 1e3, 1e6, 1e9, 1e12, mp.inf])
    assert abs(expect_inverse_norm(cov) / float(exact) - 1) < 1e-11


@pytest.mark.parametrize("n", [4, 16, 64])
def test_normalised_outer_has_unit_trace(n):
    outer = expect_normalized_outer(_covariance(n, n))
    assert abs(np.trace(outer) - 1) < 1e-13
    assert np.allclose(outer, outer.T, atol=1e-16)
