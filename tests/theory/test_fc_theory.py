"""Fully-connected mean-field theory: closed-form cases, published values, and float64
against 50-digit mpmath for q*, c*, the χ's and the ξ's."""

from __future__ import annotations

import math

import mpmath
import pytest

from workbench.activations import parse_activation
from workbench.errors import TheoryError
from workbench.precision import Float64, Mp
from workbench.theory.critical import critical_point
from workbench.theory.fc_fixed_points import analyze_cycle
from workbench.theory.fc_maps import single_step

F64 = Float64()


def cycle(name, sw2, sb2):
    return single_step(parse_activation(name), sw2, sb2)


def test_relu_fixed_point_closed_form():
    """relu: q* = σ_b²/(1 − σ_w²/2), χ₁ = χ_q* = σ_w²/2 (ordered when σ_w² < 2)."""
    sw2, sb2 = 1.5, 0.1
    res = analyze_cycle(cycle("relu", sw2, sb2))
    assert res.q_star == pytest.approx(sb2 / (1 - sw2 / 2), rel=1e-13)
    assert res.chi_1 == pytest.approx(sw2 / 2, rel=1e-13)
    assert res.chi_q == pytest.approx(sw2 / 2, rel=1e-12)
    assert res.phase == "ordered" and res.c_star == 1


def test_relu_diverges_above_two():
    res = analyze_cycle(cycle("relu", 2.5, 0.1))
    assert res.q_star is None and res.growth_rate == pytest.approx(1.25, rel=1e-6)
    assert res.phase == "chaotic"
    assert any("no finite fixed point" in n for n in res.notes)


def test_relu_critical_point():
    point = critical_point(parse_activation("relu"), 0.0)
    assert point.sigma_w2 == pytest.approx(2.0, rel=1e-14)
    with pytest.raises(TheoryError):
        critical_point(parse_activation("relu"), 0.1)


def test_tanh_critical_line_starts_at_one():
    point = critical_point(parse_activation("tanh"), 0.0)
    assert point.sigma_w2 == pytest.approx(1.0, rel=1e-12) and point.q_star == 0


def test_critical_point_is_critical():
    """On the critical line the fixed-point analysis finds χ₁ = 1 and the same q*."""
    for name in ("tanh", "erf", "arctan"):
        point = critical_point(parse_activation(name), 0.05)
        res = analyze_cycle(cycle(name, point.sigma_w2, 0.05))
        assert res.chi_1 == pytest.approx(1.0, abs=1e-11)
        assert res.q_star == pytest.approx(point.q_star, rel=1e-10)
        assert res.phase == "critical"


def test_sigmoid_needs_huge_weight_variance():
    """pabari_zhou Theorem 1 / Fig. 5: critical sigmoid at σ_b² = 0 needs σ_w² ≈ 103."""
    point = critical_point(parse_activation("sigmoid"), 0.0)
    assert 100 < point.sigma_w2 < 106


def test_tanh_chaotic_has_c_star_below_one():
    res = analyze_cycle(cycle("tanh", 2.5, 0.05))
    assert res.phase == "chaotic" and 0 < res.c_star < 1
    assert res.chi_c < 1 and res.chi_1 > 1
    assert res.xi_c == pytest.approx(-1 / math.log(res.chi_c))


def test_depth_scale_consistency_with_iteration():
    """|q^l − q*| decays like χ_q*^l: the measured rate of the iterated map equals χ_q*."""
    from workbench.theory.fc_maps import q_map

    steps = cycle("tanh", 1.3, 0.2)
    res = analyze_cycle(steps)
    q, errs = 3.0, []
    for _ in range(12):
        q = q_map(steps, q, F64)
        errs.append(q - res.q_star)
    assert errs[-1] / errs[-2] == pytest.approx(res.chi_q, rel=1e-4)


CASES = [
    ("tanh", 1.2, 0.1),
    ("tanh", 2.2, 0.05),
    ("erf", 1.0, 0.2),
    ("erf", 3.0, 0.1),
    ("relu", 1.6, 0.3),
    ("sigmoid", 20.0, 0.1),
    ("sigmoid", 1000.0, 0.05),
]
QUANTITIES = ("q_star", "c_star", "chi_1", "chi_q", "chi_c", "xi_q", "xi_c")


@pytest.mark.parametrize("name, sw2, sb2", CASES)
def test_float64_against_50_digit_mpmath(name, sw2, sb2):
    lo = analyze_cycle(cycle(name, sw2, sb2), F64)
    hi = analyze_cycle(cycle(name, sw2, sb2), Mp(50))
    assert lo.phase == hi.phase
    for key in QUANTITIES:
        a, b = getattr(lo, key), getattr(hi, key)
        assert (a is None) == (b is None), key
        if a is not None:
            assert a == pytest.approx(float(b), rel=1e-12, abs=1e-300), key
    if lo.phase == "chaotic":
        assert hi.c_star < 1
    # the 50-digit result really carries 50 digits: the residual of the fixed point is tiny
    from workbench.theory.fc_maps import q_map

    ctx = Mp(50)
    with ctx.active():
        assert abs(q_map(cycle(name, sw2, sb2), hi.q_star, ctx) - hi.q_star) < mpmath.mpf(10) ** -48


@pytest.mark.parametrize("excess", [1e-6, 1e-9])
def test_chaotic_correlation_just_above_criticality(excess):
    """Just inside the chaotic phase c* → 1 and χ_c* → 1: the c-map's residual c′ − c is
    rounding there, so float64 takes c* = 1 − s* from the depth-safe map of s = 1 − c (its
    root s*, ~ (χ₁ − 1)/a). 1 − c* and χ_c* against erf's closed forms at 40 digits."""
    sw2 = 1.3758390073466813 * (1 + excess)  # erf's critical σ_w² at σ_b² = 0.05, raised
    lo = analyze_cycle(cycle("erf", sw2, 0.05), F64)
    hi = analyze_cycle(cycle("erf", sw2, 0.05), Mp(40))
    assert lo.phase == hi.phase == "chaotic"
    assert 1 - hi.c_star < 10 * excess  # close to 1 indeed
    assert 1 - lo.c_star == pytest.approx(float(1 - hi.c_star), rel=1e-6)
    assert 1 - lo.chi_c == pytest.approx(float(1 - hi.chi_c), rel=1e-6)


@pytest.mark.parametrize("name", ["erf", "tanh"])
def test_odd_activation_without_bias_has_c_star_zero(name):
    """Odd φ, σ_b² = 0: c = 0 and c = −1 are both fixed; the map of 1 − c is 1 at s = 1 and
    s = 2 within rounding (the fuzz harness found a division by zero there)."""
    res = analyze_cycle(cycle(name, 10.0, 0.0), F64)
    assert res.phase == "chaotic" and res.c_star == 0.0


def test_a_creeping_c_iteration_is_solved_by_bracketing():
    """softsign at σ_w² = 9.044, σ_b² = 2 (a fuzz case): χ_c* = 0.9955, so iterating the
    c-map from 0 took 2,000 iterations (10 s); past 64 iterations c* is bracketed instead.
    Against the 30-digit analysis (computed once, 316 s): c* = 0.999056268116605318, ξ_c =
    219.458405907; float64's c-map is good to ~4e-15, i.e. c* to ~1e-12 at 1/(1 − χ_c) = 220."""
    import time

    start = time.perf_counter()
    out = analyze_cycle(single_step(parse_activation("softsign"), 9.04397919997431, 2.0))
    assert time.perf_counter() - start < 5
    assert abs(out.c_star - 0.999056268116605318) < 2e-12
    assert out.xi_c == pytest.approx(219.458405907, rel=1e-8)
