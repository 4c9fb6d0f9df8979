"""The NTK's remaining passes summed in closed form once the second moments repeat exactly
(theory/ntk_series.py): the same kernels as walking every pass, in a fraction of the time."""

from __future__ import annotations

import time

import numpy as np

import workbench.theory.ntk_series as ntk_series
from workbench.theory.evaluate import initial_state, network_kernels

INPUTS = np.array([[1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.8, 0.1], [0.2, 0.2, 0.9, -0.4]])


def _deep(make_spec, act: str, sigma_w2: float, sigma_b2: float, depth: int):
    body = [{"act": act}, {"dense": {"width": 4}}]
    return make_spec([{"dense": {"width": 4}}, {"repeat": {"times": depth, "body": body}}],
                     shape=(4,), sw2=sigma_w2, sb2=sigma_b2)  # fmt: skip


def test_summed_ntk_equals_the_walk(make_spec, monkeypatch):
    """arctan at σ_w² = 1, σ_b² = 0 on inputs of norm 1e-150 (B = 1: Θ grows by K a pass)."""
    spec = _deep(make_spec, "arctan", 1.0, 0.0, 3000)
    summed = network_kernels(spec, INPUTS * 1e-150, ntk=True)
    assert any("summed in closed form" in note for note in summed.notes)
    monkeypatch.setattr(ntk_series, "summed_passes", lambda *args: None)
    walked = network_kernels(spec, INPUTS * 1e-150, ntk=True)
    assert not any("summed" in note for note in walked.notes)
    assert np.array_equal(summed.nngp, walked.nngp)
    assert np.allclose(summed.ntk, walked.ntk, rtol=1e-13, atol=0)


def test_closed_form_equals_the_loop_for_every_multiplier():
    """Θₙ = Bⁿ Θ + A (Bⁿ − 1)/(B − 1) for B below, near, at and above one, and negative."""
    b = np.array([[0.5, -0.7, 1.0], [1.0 + 1e-12, 1.0 - 3e-9, 1.01]])
    a = np.array([[1.0, 2.0, 0.5], [3.0, 0.25, 1e-3]])
    state = initial_state(np.eye(2, 3), "flat", True)
    state = state.replace(nngp=np.zeros((2, 3)), ntk=np.ones((2, 3)))

    class Affine:
        _tape = None

        def propagate(self, graph, s):
            return s.replace(ntk=a + b * s.ntk, gap=s.gap)

    after = Affine().propagate(None, state)
    passes = 700
    summed = ntk_series.summed_passes(Affine(), None, state, after, passes)
    theta = after.ntk
    for _ in range(passes):
        theta = a + b * theta
    assert np.allclose(summed.ntk, theta, rtol=1e-11, atol=0)


def test_fuzz_reproducer_depth_one_hundred_thousand(make_spec):
    """The fuzz harness's arctan block (σ_w² = 1, σ_b² = 0, inputs 1e-150, 10⁵ passes) walked
    for 36 s; Θ = (l + 1) K (B = 1, A = K: the first dense gives Θ¹ = K)."""
    spec = _deep(make_spec, "arctan", 1.0, 0.0, 100_000)
    start = time.perf_counter()
    out = network_kernels(spec, INPUTS[:2] * 1e-150, ntk=True)
    assert time.perf_counter() - start < 30  # a hang guard: ~1 s here
    assert np.allclose(out.ntk, 100_001 * out.nngp, rtol=1e-12, atol=0)


def test_a_body_whose_ntk_map_is_not_elementwise_is_walked(make_spec, monkeypatch):
    """A probe that is not affine in the NTK (here: a pass that adds Θ²) fails the check."""
    real = ntk_series.summed_passes
    calls = []

    def squaring(ev, graph, before, after, passes):
        class Twisted:
            _tape = None

            def propagate(self, g, state):
                out = ev.propagate(g, state)
                return out.replace(ntk=out.ntk + 1e-3 * state.ntk**2 / np.abs(state.ntk).max())

        calls.append(1)
        return real(Twisted(), graph, before, after, passes)

    monkeypatch.setattr(ntk_series, "summed_passes", squaring)
    out = network_kernels(_deep(make_spec, "arctan", 1.0, 0.0, 100), INPUTS * 1e-150, ntk=True)
    assert calls and not any("summed" in note for note in out.notes)
