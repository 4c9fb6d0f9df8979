"""The repeat node: kept as a loop; a body may change the shape on its first pass
(``repeat: {times: 100, body: [dense 512, act erf]}`` on 10 inputs, neural-tangents'
``stax.serial(*[Dense(512), Erf()] * 100)``) if it keeps the shape it reaches."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis import analyze_spec
from workbench.compile import spec_from_dict, spec_graph
from workbench.sim.network import build_network
from workbench.theory.evaluate import network_kernels

DEFAULTS = {"sigma_w2": 1.5, "sigma_b2": 0.05}
BODY = [{"dense": {"width": 512}}, {"act": "erf"}]


def make(layers, shape=(10,)):
    return spec_from_dict(
        {"name": "r", "input": {"shape": list(shape)}, "defaults": DEFAULTS, "layers": layers}
    )


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
