"""The depth-safe gap G = √(T_aa T_bb) − T_ab of dual kernels, against 40-digit references:
closed forms evaluated in mpmath (relu, erf), Price's theorem at ρ = 1 (G = −Σ_m (−s q)^m
E[φ^(m)(u)²]/m! for equal variances: one-dimensional integrals, a route independent of the
Hermite coefficients) and two-dimensional mpmath quadrature for unequal variances."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.gaussian.gap import angle, bias_gap, dual_gap, sin_minus_theta_cos

PAIR = np.array([[0, 1]])


def _relu_gap(qa, qb, s):
    c = 1 - s
    th = mpmath.acos(c)
    t = mpmath.sqrt(qa * qb) / (2 * mpmath.pi) * (mpmath.sin(th) + (mpmath.pi - th) * c)
    return mpmath.sqrt(qa * qb) / 2 - t


def _erf_gap(qa, qb, s):
    def t(x, k, y):
        return 2 / mpmath.pi * mpmath.asin(2 * k / mpmath.sqrt((1 + 2 * x) * (1 + 2 * y)))

    k = (1 - s) * mpmath.sqrt(qa * qb)
    return mpmath.sqrt(t(qa, qa, qa) * t(qb, qb, qb)) - t(qa, k, qb)


def _price_gap(name, q, s, terms=6):
    phi = parse_activation(name)
    total = mpmath.mpf(0)
    for m in range(1, terms + 1):
        d = phi.derivative(m).mpmath
        moment = mpmath.quad(
            lambda z, d=d: d(mpmath.sqrt(q) * z) ** 2 * mpmath.exp(-(z**2) / 2),
            [-mpmath.inf, 0, mpmath.inf],
        ) / mpmath.sqrt(2 * mpmath.pi)
        total -= (-s * q) ** m * moment / math.factorial(m)
    return total


@pytest.mark.parametrize("s", [1e-14, 1e-9, 1e-4, 0.3, 1.0, 1.7, 2.0])
@pytest.mark.parametrize("q", [(1.0, 1.0), (0.7, 1.3), (3e-3, 50.0)])
def test_closed_form_gaps_have_every_digit(q, s):
    with mpmath.workdps(40):
        qa, qb, sm = (mpmath.mpf(v) for v in (*q, s))
        for name, reference in (("relu", _relu_gap), ("erf", _erf_gap)):
            got = dual_gap(parse_activation(name), np.array(q), PAIR, np.array([s]))
            expected = reference(qa, qb, sm)
            assert got.depth_safe
            # unequal variances: the second-order term in the variance mismatch carries an
            # absolute error of a few ulp of √(T_aa T_bb) (it vanishes for equal variances)
            scale = 0 if q[0] == q[1] else 4e-17 * math.sqrt(got.own[0] * got.own[1])
            assert abs(got.gap[0] - expected) <= 1e-15 * abs(expected) + scale, (name, q, s)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("s", [1e-12, 1e-7, 1e-4])
def test_mehler_gap_near_one_matches_price(name, s):
    with mpmath.workdps(30):
        expected = _price_gap(name, mpmath.mpf(0.8), mpmath.mpf(s))
    got = dual_gap(parse_activation(name), np.array([0.8, 0.8]), PAIR, np.array([s]))
    assert got.representation == "Mehler series"
    assert abs(got.gap[0] / float(expected) - 1) < 1e-13


def test_mehler_gap_of_unequal_variances_by_quadrature():
    phi = parse_activation("tanh")
    qa, qb, s = 0.5, 1.4, 0.3
    got = dual_gap(phi, np.array([qa, qb]), PAIR, np.array([s]))
    with mpmath.workdps(20):
        c = 1 - mpmath.mpf(s)
        r = mpmath.sqrt(1 - c * c)
        a, b = mpmath.sqrt(qa), mpmath.sqrt(qb)
        density = lambda x: mpmath.exp(-(x**2) / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        cross = mpmath.quad(
            lambda x, y: mpmath.tanh(a * x) * mpmath.tanh(b * (c * x + r * y)) * density(x)
            * density(y), [-10, 0, 10], [-10, 0, 10],
        )  # fmt: skip
        own = [mpmath.quad(lambda x, v=v: mpmath.tanh(v * x) ** 2 * density(x), [-10, 0, 10])
               for v in (a, b)]  # fmt: skip
        expected = mpmath.sqrt(own[0] * own[1]) - cross
    assert got.gap[0] == pytest.approx(float(expected), rel=1e-12)
    assert got.own == pytest.approx([float(v) for v in own], rel=1e-13)


def test_kinked_without_closed_form_says_it_is_not_depth_safe():
    got = dual_gap(parse_activation("abs"), np.ones(2), PAIR, np.array([0.2]))
    assert got.representation == "difference of moments" and not got.depth_safe
    # E|u||v| = (2/π)(√(1 − c²) + c asin c) for unit variances
    expected = 1 - 2 / np.pi * (np.sqrt(1 - 0.8**2) + 0.8 * np.arcsin(0.8))
    assert got.gap[0] == pytest.approx(expected, rel=1e-10)


def test_small_angle_helpers():
    with mpmath.workdps(40):
        for t in (1e-9, 1e-3, 0.3, 0.51, 1.0, 1.49, 1.51, 2.5):
            expected = mpmath.sin(t) - t * mpmath.cos(t)
            assert abs(sin_minus_theta_cos(np.array(t)) / expected - 1) < 3e-16
        for s in (1e-20, 1e-8, 0.5, 1.9):
            assert abs(angle(np.array(s)) / mpmath.acos(1 - mpmath.mpf(s)) - 1) < 3e-16


def test_bias_gap_is_the_cauchy_schwarz_gap():
    own = np.array([0.3, 0.3, 2.0])
    pairs = np.array([[0, 1], [0, 2]])
    got = bias_gap(own, pairs, 1.5, 0.2)
    assert got[0] == 0.0
    with mpmath.workdps(40):
        ta, tb = mpmath.mpf(0.3), mpmath.mpf(2.0)
        sw, sb = mpmath.mpf(1.5), mpmath.mpf(0.2)
        expected = mpmath.sqrt((sw * ta + sb) * (sw * tb + sb)) - sw * mpmath.sqrt(ta * tb) - sb
    assert got[1] == pytest.approx(float(expected), rel=1e-15)
