"""φ's affine regime (gaussian/affine_regime.py): at the bound it finds, the affine dual kernels
equal independent routes (closed forms, 30-digit quadrature) to rounding, and a critical pass
maps its second moments to themselves exactly."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.gaussian import expect
from workbench.gaussian.affine_regime import affine_bound
from workbench.precision import Mp
from workbench.theory.evaluate import network_kernels


@pytest.mark.parametrize("name", ["tanh", "erf", "arctan", "sigmoid", "swish", "softplus"])
def test_affine_dual_equals_thirty_digits_at_the_bound(name):
    f = parse_activation(name)
    affine = affine_bound(f)
    assert affine is not None and 0 < affine.bound <= 1e-12
    q_a, q_b = affine.bound, affine.bound / 3
    k_ab = -0.4 * np.sqrt(q_a * q_b)
    exact = expect(f, f, q_a, k_ab, q_b, Mp(30))
    affine_value = affine.value**2 + affine.slope**2 * k_ab
    scale = affine.value**2 + affine.slope**2 * q_a
    assert abs(affine_value - float(exact)) <= 4e-16 * scale
    d = f.derivative()
    slope_exact = expect(d, d, q_a, k_ab, q_b, Mp(30))
    assert abs(affine.slope**2 - float(slope_exact)) <= 4e-16 * affine.slope**2


def test_sine_matches_its_closed_form_and_the_gap_its_exact_value():
    """E[sin u sin v] = e^{−(q_a+q_b)/2} sinh K; the gap of the affine dual without
    cancellation against 40-digit arithmetic."""
    f = parse_activation({"expr": "sin(x)"})
    affine = affine_bound(f)
    assert affine is not None and affine.value == 0 and affine.slope == 1
    q_a, q_b, k_ab = affine.bound, affine.bound / 2, 0.3 * affine.bound
    closed = np.exp(-(q_a + q_b) / 2) * np.sinh(k_ab)
    assert abs(k_ab - closed) <= 2e-16 * abs(closed)
    g = parse_activation({"expr": "1 + 2*tanh(x)"})
    affine = affine_bound(g)
    q = np.array([1e-20, 4e-21])
    gap = np.array([1e-30])  # √(q_a q_b) − K_ab of a nearly parallel pair
    with mpmath.workdps(40):
        qa, qb = (mpmath.mpf(float(v)) for v in q)
        kab = mpmath.sqrt(qa * qb) - mpmath.mpf(1e-30)
        v2, s2 = mpmath.mpf(affine.value) ** 2, mpmath.mpf(affine.slope) ** 2
        exact = mpmath.sqrt((v2 + s2 * qa) * (v2 + s2 * qb)) - (v2 + s2 * kab)
    got = affine.pairs_gap(q[:1], q[1:], gap)[0]
    assert abs(got - float(exact)) <= 1e-14 * float(exact)
    with np.errstate(all="raise"):  # φ(0) = 0 at zero variances (underflowed): no 0/0
        zero = np.zeros(1)
        assert affine_bound(parse_activation("swish")).pairs_gap(zero, zero, zero)[0] == 0


@pytest.mark.parametrize("expr", ["relu", "x**2", "cos(x)"])
def test_no_affine_regime_where_phi_is_not_affine_to_rounding(expr):
    """A kink, φ(0) = φ′(0) = 0, φ′(0) = 0: the general routes serve every variance."""
    assert affine_bound(parse_activation(expr if expr == "relu" else {"expr": expr})) is None


def test_a_critical_pass_at_tiny_variances_repeats_exactly(make_spec):
    """arctan at σ_w² = 1, σ_b² = 0 on inputs of norm 1e-150: q ≈ 1e-300 does not move in
    float64; the quadrature routes drifted K_ab by 4-5 ulps a pass (1e-10 over 10⁵ passes)."""
    x = np.array([[1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.8, 0.1]]) * 1e-150
    shallow, deep = (
        network_kernels(make_spec([{"dense": {"width": 4}}, {"repeat": {"times": depth, "body": [
            {"act": "arctan"}, {"dense": {"width": 4}}]}}], shape=(4,), sw2=1.0, sb2=0.0), x)
        for depth in (1, 50)
    )  # fmt: skip
    assert np.array_equal(shallow.nngp, deep.nngp)


def test_variances_that_underflow_to_zero_say_so(make_spec):
    """swish at σ_w² = 1.5, σ_b² = 0 (χ = 0.375) on inputs of norm 1e-150: q reaches 0 in
    float64 within 60 passes; the kernels are 0 and 1 − c is undefined — said in a note, with
    no 0/0 on the way (the affine gap and the readout's 1 − c divided 0 by 0)."""
    x = np.array([[1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.8, 0.1]]) * 1e-150
    spec = make_spec([{"dense": {"width": 4}}, {"repeat": {"times": 1000, "body": [
        {"act": "swish"}, {"dense": {"width": 4}}]}}], shape=(4,), sw2=1.5, sb2=0.0)  # fmt: skip
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        out = network_kernels(spec, x, ntk=True)
    assert not out.nngp.any() and not out.ntk.any() and out.one_minus_c is None
    assert any("output variance is 0 (underflow)" in note for note in out.notes)
