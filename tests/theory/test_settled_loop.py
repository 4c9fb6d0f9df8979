"""The settled loop (theory/settled_loop.py) against the evaluator walking every pass: the same
kernels, NTK and carried 1 − c to rounding, for bodies in either order, two activations per
body, both parameterisations; and that it is taken only once the variances have settled."""

from __future__ import annotations

import numpy as np
import pytest

import workbench.theory.settled_loop as settled_loop
from workbench.theory.evaluate import network_kernels

X = np.random.default_rng(3).standard_normal((4, 8))
X[1] = X[0] + 1e-5 * X[2]  # a nearly parallel pair: 1 − c is carried, not differenced

BODIES = {
    "act-dense": [{"act": "tanh"}, {"dense": {"width": 8}}],
    "dense-act": [{"dense": {"width": 8}}, {"act": "sigmoid"}],
    "two-activations": [
        {"dense": {"width": 8}},
        {"act": "tanh"},
        {"dense": {"width": 8}},
        {"act": "swish"},
    ],  # fmt: skip
}


def _both(monkeypatch, record_found, spec, parameterization="ntk", scale=1.0):
    calls = record_found(settled_loop, "settled_passes")
    fused = network_kernels(spec, scale * X, parameterization=parameterization)
    monkeypatch.setattr(settled_loop, "settled_passes", lambda *args: None)
    walked = network_kernels(spec, scale * X, parameterization=parameterization)
    return fused, walked, calls


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_fused_passes_equal_the_evaluator_walking_them(monkeypatch, record_found, make_spec, body,
                                                       parameterization):  # fmt: skip
    layers = [{"dense": {"width": 8}}, {"repeat": {"times": 200, "body": BODIES[body]}}]
    spec = make_spec(layers, sw2=1.6, sb2=0.1)
    fused, walked, calls = _both(monkeypatch, record_found, spec, parameterization)
    assert calls[-1] and sum(calls) == 1  # taken once, after the variances settled
    for name in ("nngp", "ntk"):
        a, b = getattr(fused, name), getattr(walked, name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13 * np.abs(b).max())
    np.testing.assert_allclose(fused.one_minus_c, walked.one_minus_c, rtol=1e-9, atol=1e-300)
    # the fused loop checks for an exact fixed point every 16 passes: the same note, its
    # pass count rounded up to a check
    assert [n.split(" after ")[0] for n in fused.notes] == [
        n.split(" after ")[0] for n in walked.notes
    ]


def test_not_taken_while_the_variances_move(monkeypatch, record_found, make_spec):
    """swish at σ_w² = 2.5 on inputs of norm 1e-8: every variance is the bias's, equal, but q
    grows ~25% a pass and never settles, so every pass is walked. Asking whether the state
    has settled must not count as a visit of its variance (that made the evaluator build
    interpolants at every q of a fuzz case: 48 builds, 15 s instead of 2)."""
    import workbench.gaussian.interpolant as interpolant

    builds = []
    original = interpolant.DualInterpolant.__init__

    def counting(self, *args):
        builds.append(args[-1])
        original(self, *args)

    monkeypatch.setattr(interpolant.DualInterpolant, "__init__", counting)
    body = [{"act": "swish"}, {"dense": {"width": 8}}]
    spec = make_spec([{"dense": {"width": 8}}, {"repeat": {"times": 12, "body": body}}],
                     sw2=2.5, sb2=0.5)  # fmt: skip
    fused, walked, calls = _both(monkeypatch, record_found, spec, scale=1e-8)
    assert not any(calls) and not builds
    np.testing.assert_allclose(fused.nngp, walked.nngp, rtol=1e-14)
