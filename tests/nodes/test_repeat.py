"""The repeat node: kept as a loop; a body may change the shape on its first pass
(``repeat: {times: 100, body: [dense 512, act erf]}`` on 10 inputs, neural-tangents'
``stax.serial(*[Dense(512), Erf()] * 100)``) if it keeps the shape it reaches."""

from __future__ import annotations

import numpy as np
import pytest
from spec_factory import make_spec

from workbench.analysis import analyze_spec
from workbench.compile import spec_from_dict, spec_graph
from workbench.sim.network import build_network
from workbench.theory.evaluate import network_kernels

BODY = [{"dense": {"width": 512}}, {"act": "erf"}]


def make(layers, shape=(10,)):
    return make_spec(layers, shape, name="r")


SHAPE_CHANGING = make([{"repeat": {"times": 100, "body": BODY}}, {"dense": {"width": 1}}])
UNROLLED_FIRST = make(
    [*BODY, {"repeat": {"times": 99, "body": BODY}}, {"dense": {"width": 1}}]
)  # the same network with the first pass written out


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_shape_changing_body_equals_its_first_pass_written_out(parameterization):
    x = np.random.default_rng(0).standard_normal((5, 10))
    a = network_kernels(SHAPE_CHANGING, x, parameterization=parameterization)
    b = network_kernels(UNROLLED_FIRST, x, parameterization=parameterization)
    assert np.allclose(a.nngp, b.nngp, rtol=1e-13, atol=0)
    assert np.allclose(a.ntk, b.ntk, rtol=1e-13, atol=0)


def test_shape_changing_body_compiles_analyzes_and_simulates():
    graph = spec_graph(SHAPE_CHANGING)
    attrs = graph.nodes["layers[0]"]
    assert attrs["in_shape"] == (10,) and attrs["out_shape"] == (512,)
    assert attrs["body"].graph["input_shape"] == (10,)
    assert attrs["body_again"].graph["input_shape"] == (512,)
    block = analyze_spec(SHAPE_CHANGING).blocks[0]
    assert block.q_star is not None and block.phase == "chaotic"
    net = build_network(make([{"repeat": {"times": 3, "body": BODY}}]), ensemble=2)
    assert net.output_shape == (512,)


def test_a_body_must_keep_the_shape_it_reaches():
    from workbench.errors import SpecError

    body = [{"conv": {"channels": 4, "kernel": 3}}, {"pool": "global_avg"}]
    with pytest.raises(SpecError, match="second pass"):
        make([{"repeat": {"times": 2, "body": body}}], shape=(3, 8))
    once = make([{"repeat": {"times": 1, "body": body}}], shape=(3, 8))
    assert spec_graph(once).graph["output_shape"] == (4,)


def test_a_pass_that_returns_its_input_ends_the_loop():
    """Ordered tanh (σ_w² = 0.5) reaches a floating-point fixed point, NTK included: 20,000
    passes give bitwise what 2,000 give, and the general engine says where it stopped."""
    spec = {"input": {"shape": [8]}, "defaults": {"sigma_w2": 0.5, "sigma_b2": 0.05}}

    def deep(times):
        body = [{"act": "tanh"}, {"dense": {"width": 16}}]
        layers = [{"dense": {"width": 16}}, {"repeat": {"times": times, "body": body}}]
        return spec_from_dict({**spec, "name": "ordered", "layers": layers})

    x = np.random.default_rng(0).standard_normal((6, 8))
    long, short = network_kernels(deep(20_000), x), network_kernels(deep(2_000), x)
    assert np.array_equal(long.nngp, short.nngp) and np.array_equal(long.ntk, short.ntk)
    assert any("exact fixed point after" in note for note in long.notes)


def test_the_fused_loop_stops_at_an_exact_fixed_point_and_only_then():
    from workbench.theory.kernel_program import _repeat

    calls = []

    def settle(state):  # halves the distance to 1 until rounding leaves it at 1 exactly
        calls.append(1)
        return (state + 1) / 2

    out = _repeat([settle], 10**6, checked=True)(np.zeros(3))
    assert np.array_equal(out, np.ones(3)) and len(calls) < 100
    calls.clear()
    _repeat([lambda s: (calls.append(1), s + 1)[1]], 1000, checked=True)(np.zeros(3))
    assert len(calls) == 1000
