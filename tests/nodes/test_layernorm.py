"""The layernorm node: its kernel rule (and NTK) against Monte-Carlo of its own torch module,
after a relu (features with a non-zero mean, so the centring matters), flat, spatial
(per-pixel over channels) and flattened; its symbolic form against the rule."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from spec_factory import make_spec

from workbench import notation as n
from workbench.errors import SpecError
from workbench.nodes.base import rule
from workbench.sim import probes
from workbench.sim.network import build_network
from workbench.theory.derive import derive
from workbench.theory.evaluate import Evaluator, initial_state, network_kernels

LAYERNORM = {"layernorm": {"gamma": 1.3, "beta": 0.2}}


def make(layers, shape):
    return make_spec(layers, shape, sw2=1.6, sb2=0.1, name="ln")


CASES = {
    "flat": make(
        [{"dense": {"width": 256}}, {"act": "relu"}, LAYERNORM, {"dense": {"width": 128}}], [6]
    ),
    "spatial": make(
        [{"conv": {"channels": 128, "kernel": 3}}, {"act": "relu"}, LAYERNORM,
         {"conv": {"channels": 64, "kernel": 3}}],
        [3, 5],
    ),
    "flattened": make(
        [{"conv": {"channels": 64, "kernel": 3}}, {"act": "relu"}, "flatten", LAYERNORM,
         {"dense": {"width": 128}}],
        [3, 5],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_rule_matches_its_torch_module(name, sampled_kernels, agreement):
    spec = CASES[name]
    x = np.random.default_rng(0).standard_normal((3, *spec.input_shape))
    theory = network_kernels(spec, x, ntk=False, mode="full").nngp
    samples = sampled_kernels(spec, x, ensemble=96)
    result = agreement(theory, samples, allowance=0.01)
    assert result["entries"] and result["scale"] and result["power"] < 0.05, result
    # without the centring (γ² K/√(K_aa K_bb) + β², right only for zero-mean features) the
    # same samples reject the theory
    if name == "flat":
        ev = Evaluator()
        state = initial_state(x, "flat", False)
        for node in spec.layers[:2]:
            state = rule(node, "kernel")(node, state, ev, {})
        r = ev.realized(state).nngp
        diag = np.sqrt(np.diag(r))
        wrong = 1.6 * (1.3**2 * r / np.outer(diag, diag) + 0.2**2) + 0.1
        assert not agreement(wrong, samples, allowance=0.01)["entries"]


def test_ntk_matches_the_empirical_ntk():
    spec = make(
        [{"dense": {"width": 256}}, {"act": "relu"}, LAYERNORM, {"dense": {"width": 1}}], [6]
    )
    x = np.random.default_rng(1).standard_normal((4, 6))
    theory = network_kernels(spec, x).ntk
    net = build_network(spec, ensemble=8, seed=3)
    emp = probes.empirical_ntk(net, torch.tensor(x)).reshape(8, 4, 4).numpy()
    mean, sem = emp.mean(0), emp.std(0, ddof=1) / np.sqrt(8)
    assert (np.abs(theory - mean) <= 4.5 * sem + 0.03 * np.abs(theory).max()).all()


def test_symbolic_form_equals_the_rule():
    spec = CASES["flat"]
    stage = next(s for s in derive(spec).stages if s.kind == "layernorm")
    ev = Evaluator()
    state = initial_state(np.random.default_rng(2).standard_normal((2, 6)), "flat", True)
    for node in spec.layers[:2]:
        state = rule(node, "kernel")(node, state, ev, {})
    state = ev.realized(state)
    node = spec.layers[2]
    out = rule(node, "kernel")(node, state, ev, {})
    subs = {n.q_a: state.nngp[0, 0], n.q_b: state.nngp[1, 1], n.K: state.nngp[0, 1],
            n.m_x: state.mean[0], n.m_x2: state.mean[1], n.Theta: state.ntk[0, 1]}  # fmt: skip
    assert float(stage.rules["nngp"].rhs.xreplace(subs)) == pytest.approx(out.nngp[0, 1], 1e-12)
    assert float(stage.rules["ntk"].rhs.xreplace(subs)) == pytest.approx(out.ntk[0, 1], 1e-12)
    assert isinstance(stage.rules["nngp"], sp.Eq)


def test_bad_settings_are_typed_errors():
    with pytest.raises(SpecError, match="gamma"):
        make([{"dense": {"width": 4}}, {"layernorm": {"gamma": "big"}}], [3])
