"""The Gaussian-expectation engine: closed forms against quadrature, float64 against
50-digit mpmath, kinks, degenerate covariances."""

from __future__ import annotations

import math

import mpmath
import pytest

from workbench.activations import parse_activation
from workbench.errors import TheoryError
from workbench.gaussian import expect, expect1
from workbench.gaussian.closed_forms import closed_form, match_family
from workbench.gaussian.quadrature import expect2_float64, expect2_mpmath
from workbench.gaussian.symbolic import symbolic_expect
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

    q1, q12, q2 = sp.symbols("q1 q12 q2", positive=True)
    integral = symbolic_expect(act("tanh"), act("tanh"), q1, q12, q2)
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


SHIFTED = ["relu(x + 0.3)", "2*relu(x - 0.5)", "step(x + 0.3)", "step(3*x - 1)", "relu(x)"]


def _by_conditioning(f_text: str, g_text: str, q11: float, q12: float, q22: float) -> float:
    """An independent route for E[f(u) g(v)] with f, g shifted relu/step: v | u is normal
    (mean q12/q11 u, variance q22 − q12²/q11), E[g(v) | u] is elementary, the outer integral
    over u is adaptive quadrature split at f's kink (one point when |c| = 1)."""
    from scipy.integrate import quad
    from scipy.stats import norm

    f, g = act(f_text), act(g_text)
    fam = match_family(g.expr)
    amp, shift = float(fam.a), float(fam.shift)
    var = max(q22 - q12 * q12 / q11, 0.0)
    kink = -float(match_family(f.expr).shift)

    def inner(u: float) -> float:
        mu = q12 / q11 * u + shift
        if var == 0:
            return float(g.numpy(mu - shift))
        sd = math.sqrt(var)
        if fam.form == "step":
            return amp * norm.cdf(mu / sd)
        return amp * (mu * norm.cdf(mu / sd) + sd * norm.pdf(mu / sd))

    def outer(u: float) -> float:
        return float(f.numpy(u)) * inner(u) * norm.pdf(u, scale=math.sqrt(q11))

    span = 12 * math.sqrt(q11)
    kinks = {kink} | ({-shift * q11 / q12} if var == 0 else set())  # g's kink when v = c·u
    points = sorted(p for p in kinks if -span < p < span)
    return quad(outer, -span, span, points=points or None, limit=400, epsabs=1e-13)[0]


@pytest.mark.parametrize("f", SHIFTED)
@pytest.mark.parametrize("g", SHIFTED[:3])
@pytest.mark.parametrize(
    "cov",
    [(1.0, 0.3, 2.0), (0.5, -0.45, 0.7), (1.3, 1.3, 1.3), (0.7, -0.7, 0.7), (0.8, 0.8 * 1.5, 2.25)],
)
def test_shifted_relu_and_step_closed_forms(f, g, cov):
    """a·relu(x + s) and a·H(x + s) (activations after a batch norm's β): the bivariate
    normal truncated moments (Owen's T) against conditioning plus 1D quadrature, including
    perfectly (anti)correlated pairs, and float64 against 30-digit mpmath."""
    if f == g == "relu(x)":
        pytest.skip("unshifted pair: the arc-cosine kernel, tested above")
    q11, q12, q22 = cov
    exact = closed_form(act(f).expr, act(g).expr, F64)
    assert exact is not None
    value = float(exact(q11, q12, q22))
    assert value == pytest.approx(_by_conditioning(f, g, q11, q12, q22), rel=1e-9, abs=1e-12)
    mp = Mp(30)
    with mp.active():
        high = closed_form(act(f).expr, act(g).expr, mp)(q11, q12, q22)
    assert value == pytest.approx(float(high), rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("k", [3.0, 10.0])
def test_an_activation_sharper_than_tanh_gets_finer_panels(k):
    """E[tanh(k z)²] is E[tanh(u)²] at q = k²; with tanh's panels the first was 5.6e-11 off
    (k = 3), silently. Checked against mpmath at 30 digits."""
    import numpy as np

    from workbench.activations import Activation

    sharp = parse_activation({"expr": f"tanh({k}*x)"})
    tanh = parse_activation("tanh")
    with mpmath.workdps(30):
        exact = mpmath.quad(lambda z: mpmath.tanh(k * z) ** 2 * mpmath.npdf(z),
                            [-mpmath.inf, -1, 0, 1, mpmath.inf])  # fmt: skip
    for value in (expect(sharp, sharp, 1.0, 1.0, 1.0, Float64()),
                  expect1(Activation("sq", sharp.expr**2), np.array([1.0]), Float64())[0],
                  expect(tanh, tanh, k * k, k * k, k * k, Float64())):  # fmt: skip
        assert float(value) == pytest.approx(float(exact), rel=2e-15)
