"""The exact split φ = ψ + δ (gaussian/asymptote.py) against independent routes: direct
quadrature where it is accurate, erf's arcsine closed forms, and 1-d mpmath integrals on the
diagonal; and the deep chaotic nets it exists for."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.gaussian import expect
from workbench.gaussian.asymptote import asymptote, split_expect
from workbench.gaussian.closed_forms import closed_form
from workbench.precision import F64

CORRELATIONS = np.array([0.3, -0.8, 0.999999])


def _covariances(q):
    q1, q2 = np.array([q, q, 1.3 * q]), np.array([q, 0.7 * q, q])
    return q1, CORRELATIONS * np.sqrt(q1 * q2), q2


@pytest.mark.parametrize("name", ["swish", "gelu", "softplus", "tanh", "sigmoid"])
@pytest.mark.parametrize("q", [50.0, 1000.0])
def test_split_equals_direct_quadrature(name, q):
    phi = parse_activation(name)
    for f in (phi, phi.derivative()):
        q1, q12, q2 = _covariances(q)
        split = split_expect(f, f, q1, q12, q2)
        direct = [expect(f, f, a, b, c, F64) for a, b, c in zip(q1, q12, q2)]
        np.testing.assert_allclose(split, direct, rtol=1e-12)


@pytest.mark.parametrize("q", [1e3, 1e6, 1e12])
def test_split_equals_erf_closed_forms(q):
    phi = parse_activation("erf")
    for f in (phi, phi.derivative()):
        q1, q12, q2 = _covariances(q)
        exact = closed_form(f.expr, f.expr, F64)(q1, q12, q2)
        np.testing.assert_allclose(split_expect(f, f, q1, q12, q2), exact, rtol=1e-11)


@pytest.mark.parametrize("name", ["swish", "tanh"])
@pytest.mark.parametrize("q", [50.0, 1e5])
def test_split_on_the_diagonal_equals_a_30_digit_integral(name, q):
    f = parse_activation(name).derivative()
    fn = f.mpmath
    with mpmath.workdps(30):
        scale = mpmath.sqrt(q)
        density = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        points = [-40 / scale, -1 / scale, 0, 1 / scale, 40 / scale]
        reference = mpmath.quad(lambda z: fn(scale * z) ** 2 * density(z),
                                [-mpmath.inf, *points, mpmath.inf])  # fmt: skip
    split = split_expect(f, f, np.array([q]), np.array([q]), np.array([q]))[0]
    assert split == pytest.approx(float(reference), rel=1e-13)


def test_asymptotes_of_the_named_activations():
    found = {name: asymptote(parse_activation(name)) for name in ("swish", "tanh", "relu")}
    assert (found["swish"].degree, found["swish"].alpha, found["swish"].beta) == (1, 1.0, 0.0)
    assert (found["tanh"].degree, found["tanh"].alpha, found["tanh"].beta) == (0, 1.0, -1.0)
    assert found["relu"].degree == 1
    assert asymptote(parse_activation({"expr": "x*tanh(x) + sin(x)"})) is None  # no asymptote


def test_high_precision_refuses_what_it_cannot_resolve():
    """At 20 digits, E[tanh′(u) tanh′(v)] at q = 1e40 came out 6e-4 off its leading term
    4/(2π q √(1 − c²)) (exact to 1e-38 there): now a typed refusal."""
    from workbench.errors import TheoryError
    from workbench.precision import Mp

    d = parse_activation("tanh").derivative()
    ctx = Mp(20)
    with ctx.active(), pytest.raises(TheoryError, match="cannot be vouched for"):
        q = mpmath.mpf(10) ** 40
        expect(d, d, q, q / 2, q, ctx)


def test_perfectly_correlated_pairs_are_exact():
    """Where √q·√q rounds away from q (q = 1.06e5), the split took the diagonal's
    q₁q₂ − q₁₂² as ~1e-16 q² instead of 0: an angle of 1e-8 made gelu′'s step kernel 1e-9
    off per layer (6e-7 in a 1,000-layer NTK); likewise parallel inputs of unequal norms."""
    f = parse_activation("gelu").derivative()
    fn = f.mpmath
    for q1, q2 in [(1.0608183551394483e5, 1.0608183551394483e5), (3000.0, 3.0)]:
        assert q1 != q2 or np.sqrt(q1) * np.sqrt(q1) != q1
        split = split_expect(f, f, np.array([q1]), np.array([np.sqrt(q1) * np.sqrt(q2)]),
                             np.array([q2]))[0]  # fmt: skip
        with mpmath.workdps(30):
            k, sd = mpmath.sqrt(mpmath.mpf(q2) / q1), mpmath.sqrt(q1)
            points = [-40 * sd, -40 / k, -40, -1 / k, -1, 0, 1, 1 / k, 40, 40 / k, 40 * sd]
            density = mpmath.sqrt(2 * mpmath.pi * q1)

            def integrand(x, k=k, q=q1, density=density):
                return fn(x) * fn(k * x) * mpmath.exp(-x * x / (2 * q)) / density

            reference = mpmath.quad(integrand, [-mpmath.inf, *sorted(set(points)), mpmath.inf])
        assert split == pytest.approx(float(reference), rel=1e-14)


@pytest.mark.parametrize("name", ["gelu", "sigmoid"])
def test_split_serves_inputs_of_unequal_norms(name):
    """One variance far (1e4), the other moderate: the split (no longer 2-d quadrature at
    40-100 ms an entry) equals direct quadrature."""
    import workbench.gaussian as gaussian

    phi = parse_activation(name)
    for f in (phi, phi.derivative()):
        q1, q2 = np.array([1e4, 1e4, 300.0]), np.array([436.0, 1.0, 15.0])
        q12 = np.array([0.3, 0.999, -0.6]) * np.sqrt(q1 * q2)
        direct = gaussian.quadrature.expect2_float64(
            f.numpy, f.numpy, q1, q12, q2, f.kinks, f.kinks, f.singularity_distance
        )
        scale = np.abs(direct).max()
        np.testing.assert_allclose(split_expect(f, f, q1, q12, q2), direct, atol=1e-13 * scale)


def test_uncorrelated_pairs_from_the_split():
    """c = 0 exactly: every conditional mean is the same (a Chebyshev fit on an empty range
    of μ was NaN); E[φ(u) φ(v)] = E[φ(u)] E[φ(v)] for independent u, v."""
    from workbench.gaussian import expect1

    f = parse_activation("sigmoid")
    split = split_expect(f, f, np.array([481.9]), np.array([0.0]), np.array([481.9]))[0]
    assert split == pytest.approx(float(expect1(f, 481.9, F64)) ** 2, rel=1e-14)
