"""Layer-by-layer kernel evolution: the interpolated fast path against direct integration,
the approach to the fixed points, and float64 against 30-digit mpmath."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.precision import Float64, Mp
from workbench.theory.evolution import _direct_step, evolve_kernel, input_kernel
from workbench.theory.fc_fixed_points import analyze_cycle
from workbench.theory.fc_maps import single_step

F64 = Float64()


def inputs_at(q0: float, sw2: float, sb2: float, n: int = 12, d: int = 40, seed: int = 0):
    """n random inputs scaled so that the first layer's variance is exactly q0."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    x *= np.sqrt((q0 - sb2) / sw2 * d) / np.linalg.norm(x, axis=1, keepdims=True)
    return input_kernel(x, sw2, sb2)


_REPRESENTATION = {
    "tanh": "Mehler series",
    "relu": "arc-cosine closed form",
    "sigmoid": "Mehler series",
}


@pytest.mark.parametrize(
    "name, sw2, sb2",
    [("tanh", 1.76095463960674, 0.05), ("relu", 2.0, 0.0), ("sigmoid", 40.0, 0.3)],
)
def test_interpolated_layers_equal_direct_integration(name, sw2, sb2):
    """From the fixed-point variance on, the fast path (c-map interpolant, exact repetition)
    must reproduce layer-by-layer direct integration of every pair."""
    steps = single_step(name, sw2, sb2)
    fixed = analyze_cycle(steps, F64).to_dict()
    q_star = float(fixed["q_star"]) if fixed["q_star"] is not None else 1.0
    kernel = inputs_at(q_star, sw2, sb2, n=8)
    fast = evolve_kernel(steps, kernel, 25)
    q, s = fast.q[0], fast.one_minus_c[0]
    for layer in range(1, 26):
        q, s, _ = _direct_step(steps[0], q, fast.pairs, s, F64)
        assert np.abs(s - fast.one_minus_c[layer]).max() <= 1e-12, layer
        assert np.abs(q - fast.q[layer]).max() <= 1e-13 * q_star
    assert fast.notes == [f"1 - c carried depth-safely ({_REPRESENTATION[name]})"]


def test_chaotic_correlations_reach_c_star():
    """tanh at σ_w² = 3 is chaotic: every pair's correlation converges to c* < 1."""
    steps = single_step("tanh", 3.0, 0.05)
    fixed = analyze_cycle(steps, F64).to_dict()
    c_star, q_star = fixed["c_star"], fixed["q_star"]
    assert c_star < 0.9
    evolution = evolve_kernel(steps, inputs_at(q_star, 3.0, 0.05), 400)
    assert np.abs(evolution.c[-1] - c_star).max() <= 1e-12
    assert np.abs(evolution.q[-1] - q_star).max() <= 1e-12 * q_star


def test_unequal_inputs_converge_to_q_star():
    """Inputs of different norms: every qˡ approaches q* (ordered phase, σ_w² = 1.2)."""
    steps = single_step("erf", 1.2, 0.1)
    q_star = analyze_cycle(steps, F64).to_dict()["q_star"]
    x = np.random.default_rng(3).standard_normal((6, 20)) * np.arange(1, 7)[:, None]
    evolution = evolve_kernel(steps, input_kernel(x, 1.2, 0.1), 200)
    assert np.abs(evolution.q[-1] - q_star).max() <= 1e-12 * q_star
    assert np.abs(evolution.c[-1] - 1).max() <= 1e-9  # ordered: c* = 1


def test_float64_matches_30_digit_mpmath():
    steps = single_step("tanh", 2.2, 0.1)
    kernel = inputs_at(0.9, 2.2, 0.1, n=3, d=8, seed=1)
    low = evolve_kernel(steps, kernel, 4)
    high = evolve_kernel(steps, kernel, 4, Mp(30))
    assert np.allclose(low.q, high.q.astype(float), rtol=1e-13, atol=0)
    assert np.allclose(low.c, high.c.astype(float), rtol=1e-12, atol=0)


def test_repeat_cycle_of_two_steps():
    """A body with two different dense layers alternates two maps; the fast path must keep the
    alternation (and agree with direct integration)."""
    steps = (*single_step("tanh", 1.5, 0.05), *single_step("tanh", 2.5, 0.2))
    kernel = inputs_at(1.0, 1.5, 0.05, n=5)
    fast = evolve_kernel(steps, kernel, 300)
    q, s = fast.q[0], fast.one_minus_c[0]
    for layer in range(300):
        q, s, _ = _direct_step(steps[layer % 2], q, fast.pairs, s, F64)
    assert np.abs(s - fast.one_minus_c[300]).max() <= 1e-11
    assert fast.q[299][0] != pytest.approx(fast.q[300][0], rel=1e-3)


def test_bad_kernel_is_a_typed_error():
    from workbench.errors import TheoryError

    with pytest.raises(TheoryError):
        evolve_kernel(single_step("tanh", 1.0, 0.0), np.zeros((2, 2)), 3)
