"""Spec -> networkx DiGraph: typed nodes, sequential edges, repeat/residual bodies as subgraphs.

A repeat stays ONE node holding its body graph and ``times``; nothing is unrolled, so the
graph's size depends on the spec's size, never on ``times``.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from workbench.nodes.base import NodeBase, walk_nodes
from workbench.spec.model import Spec
from workbench.spec.shapes import Shape


def body_graph(body: Iterable[NodeBase], in_shape: Shape, file: str | None = None) -> nx.DiGraph:
    """The DiGraph of a node sequence; node ids are spec paths, edges follow the order."""
    graph = nx.DiGraph()
    previous = None
    for node, node_in, node_out in walk_nodes(body, in_shape, file):
        attrs = {
            "kind": node.kind,
            "node": node,
            "path": node.path,
            "in_shape": node_in,
            "out_shape": node_out,
        }
        if getattr(node, "body", None):
            attrs["body"] = body_graph(node.body, node_in, file)
            if getattr(node, "times", 1) > 1 and tuple(node_out) != tuple(node_in):
                # the body's later passes run at the shape its first pass reached
                attrs["body_again"] = body_graph(node.body, node_out, file)
        for key in ("times", "scale"):
            if hasattr(node, key):
                attrs[key] = getattr(node, key)
        graph.add_node(node.path, **attrs)
        if previous is not None:
            graph.add_edge(previous, node.path)
        previous = node.path
    graph.graph["input_shape"] = tuple(in_shape)
    graph.graph["output_shape"] = graph.nodes[previous]["out_shape"] if previous else in_shape
    return graph


def spec_graph(spec: Spec) -> nx.DiGraph:
    """The spec's DiGraph; ``graph.graph`` holds name, file, input_shape and output_shape."""
    graph = body_graph(spec.layers, spec.input_shape, spec.file)
    graph.graph.update(name=spec.name, file=spec.file)
    return graph


def node_attrs(graph: nx.DiGraph, path: str) -> dict:
    """The attributes of the node at spec path ``path``, looking inside bodies (a KeyError
    naming the path when the graph has none)."""
    if path in graph.nodes:
        return graph.nodes[path]
    for name in graph.nodes:
        body = graph.nodes[name].get("body")
        if body is not None:
            try:
                return node_attrs(body, path)
            except KeyError:
                continue
    raise KeyError(path)
