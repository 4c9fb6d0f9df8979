"""The Gaussian-expectation engine: closed forms against quadrature, float64 against
50-digit mpmath, kinks, degenerate covariances."""

from __future__ import annotations

import math

import mpmath
import pytest

from workbench.activations import parse_activation
from workbench.errors import TheoryError
from workbench.gaussian import expect, expect1, expect_symbolic
from workbench.gaussian.closed_forms import closed_form, match_family
from workbench.gaussian.quadrature import expect2_float64, expect2_mpmath
from workbench.precision import Float64, Mp

F64 = Float64()
COVARIANCES = [(1.0, 0.3, 2.0), (0.5, -0.45, 0.7), (2.5, 2.2, 2.0), (1.3, 0.0, 0.2)]


def act(text: str):
    return parse_activation(text) if "x" not in text else parse_activation({"expr": text})


@pytest.mark.parametrize(
    "f, g",
    [
        ("relu", "relu"),
        ("step(x)", "step(x)"),
        ("relu", "step(x)"),
        ("erf", "erf"),
        ("exp(-x**2)", "exp(-0.5*x**2)"),
        ("linear", "linear"),
        ("2*erf(0.7*x)", "erf(1.5*x)"),
        ("3*relu(2*x)", "relu"),
    ],
)
@pytest.mark.parametrize("q11, q12, q22", COVARIANCES)
def test_closed_form_equals_quadrature(f, g, q11, q12, q22):
    fa, ga = act(f), act(g)
    exact = closed_form(fa.expr, ga.expr, F64)
    assert exact is not None, (f, g)
    quad = expect2_float64(fa.numpy, ga.numpy, q11, q12, q22, fa.kinks, ga.kinks)
    assert float(exact(q11, q12, q22)) == pytest.approx(quad, rel=1e-12, abs=1e-14)


def test_no_closed_form_for_tanh():
    assert match_family(act("tanh").expr) is None


@pytest.mark.parametrize("name", ["tanh", "softsign", "sigmoid", "gelu", "abs(x)"])
def test_float64_quadrature_matches_mpmath(name):
    f = act(name)
    # the 20-digit side uses Mehler's series (hermite.py): an independent route
    for q11, q12, q22 in [(1.0, 0.3, 2.0), (0.5, -0.45, 0.7), (2.5, 1.7, 2.0)]:
        lo = expect(f, f, q11, q12, q22, F64)
        hi = expect(f, f, q11, q12, q22, Mp(20))
        assert lo == pytest.approx(float(hi), rel=2e-13, abs=1e-15)


def test_abs_moment_closed_form():
    """E|u| = sqrt(2q/pi): the kink at 0 must not spoil the quadrature."""
    a = act("abs(x)")
    for q in (0.01, 1.0, 37.0):
        assert expect1(a, q) == pytest.approx(math.sqrt(2 * q / math.pi), rel=1e-14)


def test_sharp_activation_at_large_variance():
    """tanh(√q z) is nearly a step for q = 400; E[tanh(u)²] still matches mpmath."""
    t = act("tanh")
    with mpmath.workdps(30):
        ref = expect(t, t, 400.0, 400.0, 400.0, Mp(20))
    assert expect(t, t, 400.0, 400.0, 400.0) == pytest.approx(float(ref), rel=1e-13)
    ref2 = expect(t, t, 400.0, 150.0, 300.0, Mp(16))
    assert expect(t, t, 400.0, 150.0, 300.0) == pytest.approx(float(ref2), rel=1e-12)


def test_degenerate_covariance_is_one_point():
    t = act("tanh")
    q = 0.8
    full = expect(t, t, q, q, q)
    assert full == pytest.approx(expect1(act("tanh(x)**2"), q), rel=1e-14)
    anti = expect(t, t, q, -q, q)
    assert anti == pytest.approx(-full, rel=1e-14)


def test_relu_arccos_50_digits():
    """Closed form at 30 digits against the nested tanh–sinh quadrature (the fallback route
    where Mehler's series converges too slowly)."""
    r = act("relu")
    ctx = Mp(30)
    with ctx.active():
        q11, q12, q22 = mpmath.mpf("1.1"), mpmath.mpf("0.4"), mpmath.mpf("0.9")
        exact = expect(r, r, q11, q12, q22, ctx)
        quad = expect2_mpmath(r.mpmath, r.mpmath, q11, q12, q22, r.kinks, r.kinks)
        assert abs(exact - quad) < mpmath.mpf(10) ** -27


def test_not_psd_is_a_typed_error():
    t = act("tanh")
    with pytest.raises(TheoryError):
        expect(t, t, 1.0, 2.0, 1.0)
    with pytest.raises(TheoryError):
        expect1(t, -1.0)


def test_symbolic_form_is_an_integral():
    import sympy as sp

    integral = expect_symbolic(act("tanh"), act("tanh"))
    assert isinstance(integral, sp.Integral)
    assert integral.has(sp.tanh)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softsign", "swish"])
def test_vectorised_variances_match_mpmath(name):
    """A batch of perfectly correlated covariances q11 = q12 = q22 over eleven decades (the
    one-point rule serving the q-map and the critical line) against 30-digit mpmath, for φ and
    φ′ (softsign's slow 1/x tails are the hard case at large q)."""
    import numpy as np

    qs = np.geomspace(1e-6, 1e5, 12)
    for h in (act(name), act(name).derivative()):
        batch = expect(h, h, qs, qs, qs)
        for q, value in zip(qs, batch):
            ref = expect(h, h, mpmath.mpf(q), mpmath.mpf(q), mpmath.mpf(q), Mp(30))
            assert value == pytest.approx(float(ref), rel=1e-13, abs=1e-300), (h.name, q)
