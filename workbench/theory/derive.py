"""Symbolic recursions of a spec: every stage's rules as sympy equations, from the node
kinds' ``symbolic`` rules, with the spec's activation and numbers substituted.

The walk follows the compiled graph like the evaluator: an activation stays pending until the
next layer that reads it (so a dense layer's rules show E[φ(u)φ(v)] of the activations before
it, composed), bodies are walked once in place (a repeat's first pass; its later passes see
the body's own trailing activation), and a residual body reads the realized stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import sympy as sp

from workbench.compile.graph import spec_graph
from workbench.nodes.base import rule
from workbench.spec.model import Spec


@dataclass(frozen=True)
class Stage:
    path: str
    kind: str
    rules: dict[str, sp.Eq]

    def to_dict(self, latex: bool = True) -> dict[str, Any]:
        show = sp.latex if latex else sp.sstr
        return {
            "path": self.path,
            "kind": self.kind,
            "rules": {name: show(eq, full_prec=False) for name, eq in self.rules.items()},
        }


@dataclass(frozen=True)
class Derivation:
    spec: str
    stages: tuple[Stage, ...]

    def to_dict(self, latex: bool = True) -> dict[str, Any]:
        return {"spec": self.spec, "stages": [s.to_dict(latex) for s in self.stages]}


def derive(spec: Spec) -> Derivation:
    """The symbolic rules of every stage of the spec (bodies included), in network order."""
    stages: list[Stage] = []
    _walk(spec_graph(spec), None, stages)
    return Derivation(spec.name, tuple(stages))


def _walk(graph: nx.DiGraph, phi: Any, stages: list[Stage]) -> Any:
    for name in nx.topological_sort(graph):
        attrs = graph.nodes[name]
        node = attrs["node"]
        rules, after = rule(node, "symbolic")(node, phi, attrs)
        stages.append(Stage(node.path, node.kind, rules))
        if "body" in attrs:
            inner = _walk(attrs["body"], after, stages)
            after = inner if "times" in attrs else None
        phi = after
    return phi
