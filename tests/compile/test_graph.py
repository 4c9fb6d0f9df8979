"""spec_graph, walk_nodes and summarize: typed nodes, repeat kept as one node, O(spec size) cost."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import networkx as nx
import pytest
from spec_factory import SPEC_FILES

from workbench.compile import load_spec, spec_from_text
from workbench.compile.graph import spec_graph
from workbench.compile.summary import summarize, total_depth
from workbench.errors import SpecError
from workbench.nodes import Dense, Repeat
from workbench.nodes.base import walk_nodes
from workbench.spec import Spec

SPECS = SPEC_FILES


def deep_text(times: int) -> str:
    return f"""\
name: deep
input: {{shape: [3, 8, 8]}}
defaults: {{sigma_w2: 2.0, sigma_b2: 0.0}}
layers:
  - conv: {{channels: 16, kernel: 3}}
  - repeat:
      times: {times}
      body:
        - residual:
            body:
              - conv: {{channels: 16, kernel: 3}}
              - act: relu
        - bn
  - pool: global_avg
  - dense: {{width: 10}}
"""


def test_fc_graph_structure():
    spec = load_spec(SPECS / "fc_tanh.yaml")
    graph = spec_graph(spec)
    assert isinstance(graph, nx.DiGraph)
    assert list(graph.nodes) == ["layers[0]", "layers[1]", "layers[2]", "layers[3]"]
    assert list(graph.edges) == [
        ("layers[0]", "layers[1]"),
        ("layers[1]", "layers[2]"),
        ("layers[2]", "layers[3]"),
    ]
    assert list(nx.topological_sort(graph)) == list(graph.nodes)
    rep = graph.nodes["layers[2]"]
    assert rep["kind"] == "repeat" and rep["times"] == 10000 and isinstance(rep["node"], Repeat)
    assert (rep["in_shape"], rep["out_shape"]) == ((512,), (512,))
    body = rep["body"]
    assert list(body.nodes) == ["layers[2].repeat.body[0]", "layers[2].repeat.body[1]"]
    assert body.nodes["layers[2].repeat.body[0]"]["kind"] == "dense"
    assert list(body.edges) == [("layers[2].repeat.body[0]", "layers[2].repeat.body[1]")]
    assert graph.graph["output_shape"] == (10,) and graph.graph["name"] == "tanh-fc-critical"


def test_residual_body_graph_and_shapes():
    graph = spec_graph(load_spec(SPECS / "conv2d_resnet.yaml"))
    shapes = [(d["kind"], d["in_shape"], d["out_shape"]) for _, d in graph.nodes(data=True)]
    assert shapes == [
        ("conv", (3, 16, 16), (32, 16, 16)),
        ("bn", (32, 16, 16), (32, 16, 16)),
        ("act", (32, 16, 16), (32, 16, 16)),
        ("repeat", (32, 16, 16), (32, 16, 16)),
        ("pool", (32, 16, 16), (32,)),
        ("flatten", (32,), (32,)),
        ("dense", (32,), (10,)),
    ]
    res = graph.nodes["layers[3]"]["body"].nodes["layers[3].repeat.body[0]"]
    assert res["kind"] == "residual" and res["scale"] == 0.5
    assert [d["kind"] for _, d in res["body"].nodes(data=True)] == ["conv", "bn", "act"]


def test_walk_yields_top_level_in_order():
    spec = load_spec(SPECS / "conv1d.yaml")
    steps = list(walk_nodes(spec.layers, spec.input_shape))
    assert [n.path for n, _, _ in steps] == [f"layers[{i}]" for i in range(5)]
    assert [(i, o) for _, i, o in steps][-2:] == [((16, 32), (16,)), ((16,), (10,))]


def test_summary_rows_and_depth():
    rows = summarize(load_spec(SPECS / "fc_tanh.yaml"))
    assert [r["kind"] for r in rows] == ["dense", "act", "repeat", "dense"]
    assert rows[2] == {
        "path": "layers[2]",
        "kind": "repeat",
        "in_shape": (512,),
        "out_shape": (512,),
        "sigma_w2": 1.76,
        "sigma_b2": 0.05,
        "activation": "tanh",
        "depth": 10000,
        "times": 10000,
    }
    assert rows[1]["activation"] == "tanh" and rows[1]["depth"] == 0 and rows[1]["sigma_w2"] is None
    assert total_depth(load_spec(SPECS / "fc_tanh.yaml")) == 10002


def test_summary_mixed_variances_in_body():
    rows = summarize(load_spec(SPECS / "conv2d_resnet.yaml"))
    assert rows[3]["depth"] == 8 and rows[3]["sigma_w2"] == 1.5 and rows[3]["times"] == 8
    assert total_depth(load_spec(SPECS / "conv1d.yaml")) == 52


def test_100k_layers_compile_fast_and_do_not_unroll():
    spec = spec_from_text(deep_text(100_000))
    graph = spec_graph(spec)
    rows = summarize(spec)
    assert total_depth(spec) == 100_002 and rows[1]["times"] == 100_000
    small = spec_graph(spec_from_text(deep_text(3)))
    assert graph.number_of_nodes() == small.number_of_nodes() == 4
    inner = graph.nodes["layers[1]"]["body"]
    assert inner.number_of_nodes() == small.nodes["layers[1]"]["body"].number_of_nodes() == 2


def _peak_bytes(times: int) -> int:
    tracemalloc.start()
    try:
        spec_graph(spec_from_text(deep_text(times)))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_independent_of_times():
    _peak_bytes(2)  # warm imports and caches
    small, large = _peak_bytes(2), _peak_bytes(10**15)
    assert large < small * 1.2 + 10_000


def test_hand_built_dataclasses_are_shape_checked():
    bad = Spec("x", (3, 8, 8), (Dense(10, 1.0, 0.0, path="layers[0]"),), file="hand.py")
    with pytest.raises(SpecError) as info:
        spec_graph(bad)
    assert (info.value.path, info.value.file) == ("layers[0]", "hand.py")
    assert "flatten" in info.value.hint


def test_nodes_package_imports_first():
    code = "import workbench.nodes as n, workbench.compile.graph; print(sorted(n.REGISTRY))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "repeat" in out.stdout
