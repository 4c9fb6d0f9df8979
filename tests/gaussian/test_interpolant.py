"""The settled-variance fast path's interpolants (gaussian/interpolant.py) converge where the
dual kernel is steep, and equal direct quadrature."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.gaussian import expect
from workbench.gaussian.interpolant import DualInterpolant
from workbench.precision import F64


@pytest.mark.parametrize("name, q", [("tanh", 9.516348319980477), ("sigmoid", 45.6), ("erf", 1.0)])
def test_interpolant_builds_and_equals_quadrature(name, q):
    """tanh's Ṫ at the q* of σ_w² = 10, σ_b² = 2 needs 128 panels (64 failed, and every
    layer of such a chaotic net paid two Mehler evaluations instead)."""
    phi = parse_activation(name)
    for f in (phi, phi.derivative()):
        fast = DualInterpolant(f, f, q)
        assert fast.ok
        c = np.array([-0.999, -0.3, 0.0, 0.42, 0.9, 0.999999, 1.0])
        direct = [expect(f, f, q, x * q, q, F64) for x in c]
        np.testing.assert_allclose(fast(c), direct, rtol=1e-12, atol=1e-14 * abs(direct[-1]))
