"""Mehler's expansion of whole covariance matrices (gaussian/mehler.py) against independent
routes: closed forms (sin, cos, erf) and the per-entry two-dimensional quadrature."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.gaussian import expect, expect_gram
from workbench.gaussian.mehler import dual_matrices


def _covariances(scale: float, m: int = 10, seed: int = 0) -> np.ndarray:
    """A PSD matrix with variances of order ``scale``, one nearly collinear pair (ρ ≈ 1)
    and one anti-correlated pair."""
    x = np.random.default_rng(seed).standard_normal((m, 30))
    x[1] = x[0] * (1 + 1e-9)
    x[2] = -x[3]
    return scale * x @ x.T / 30


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_sin_and_cos_match_their_closed_forms(scale):
    """E[sin u sin v] = e^{−(q_a+q_b)/2} sinh Σ_ab, E[cos u cos v] = e^{−(q_a+q_b)/2} cosh Σ_ab."""
    k = _covariances(scale)
    q = np.diag(k)
    damp = np.exp(-(q[:, None] + q[None, :]) / 2)
    for expr, exact in (("sin(x)", damp * np.sinh(k)), ("cos(x)", damp * np.cosh(k))):
        out = dual_matrices(parse_activation({"expr": expr}), k[None])
        assert out is not None
        assert np.abs(out[0] - exact).max() <= 1e-14 * np.abs(exact).max()


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "swish", "softplus", "arctan"])
@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_smooth_activations_match_quadrature(name, scale):
    """Every entry, φ and φ′ (the NNGP's and the NTK's duals), against the per-entry rule."""
    k = _covariances(scale, seed=1)
    q = np.diag(k)
    phi = parse_activation(name)
    for f in (phi, phi.derivative()):
        out = dual_matrices(f, np.stack([k, k / 2]))
        assert out is not None, f"declined {f.name} at q ~ {scale}"
        for index, cov in enumerate((k, k / 2)):
            d = np.diag(cov)
            ref = expect(f, f, d[:, None], cov, d[None, :])
            assert np.abs(out[index] - ref).max() <= 1e-13 * np.abs(ref).max(), f.name
    assert q.min() > 0


def test_erf_matches_the_arcsine_closed_form():
    """E[erf u erf v] = (2/π) arcsin(2Σ_ab / √((1+2q_a)(1+2q_b))) (Williams 1997)."""
    k = _covariances(2.0, seed=2)
    q = np.diag(k)
    exact = 2 / np.pi * np.arcsin(2 * k / np.sqrt((1 + 2 * q[:, None]) * (1 + 2 * q[None, :])))
    out = dual_matrices(parse_activation("erf"), k[None])
    assert np.abs(out[0] - exact).max() <= 1e-14 * np.abs(exact).max()


def test_declines_what_it_cannot_vouch_for_and_the_engine_still_answers():
    """Kinked φ (power-law Hermite tails) and very sharp φ(√q z) are declined; expect_gram
    then integrates entry by entry, and agrees with the per-entry rule."""
    k = _covariances(60.0, m=4, seed=3)
    tanh = parse_activation("tanh")
    assert dual_matrices(parse_activation("softsign"), k[None] / 60) is None
    assert dual_matrices(tanh, k[None]) is None
    q = np.diag(k)
    ref = expect(tanh, tanh, q[:, None], k, q[None, :])
    assert np.abs(expect_gram(tanh, k[None])[0] - ref).max() <= 1e-14 * np.abs(ref).max()
