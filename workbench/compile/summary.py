"""Per-stage summary of a Spec (for ``workbench check``) and its total weight depth."""

from __future__ import annotations

from typing import Any

from workbench.nodes.base import NodeBase, walk_nodes
from workbench.spec.model import Spec


def depth(node: NodeBase) -> int:
    """Weight layers (dense/conv) the node contributes, counting repeats without unrolling."""
    if hasattr(node, "sigma_w2"):
        return 1
    body = getattr(node, "body", None)
    if body is None:
        return 0
    return getattr(node, "times", 1) * sum(depth(child) for child in body)


def total_depth(spec: Spec) -> int:
    """Number of weight layers in the whole network."""
    return sum(depth(node) for node in spec.layers)


def _flat(node: NodeBase) -> list[NodeBase]:
    """The node and every node inside its bodies, once each (no unrolling)."""
    out = [node]
    for child in getattr(node, "body", ()):
        out.extend(_flat(child))
    return out


def _distinct(values: list[Any]) -> Any:
    """None for no value, the value if all agree, else the list of distinct values."""
    unique = list(dict.fromkeys(values))
    if not unique:
        return None
    return unique[0] if len(unique) == 1 else unique


def activation_name(activation: Any) -> str:
    """A display name for an Activation object."""
    for attr in ("name", "expr", "text"):
        value = getattr(activation, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(activation)


def summarize(spec: Spec) -> list[dict[str, Any]]:
    """One dict per top-level stage: path, kind, shapes, variances, activation, depth, times."""
    rows = []
    for node, in_shape, out_shape in walk_nodes(spec.layers, spec.input_shape, spec.file):
        inner = _flat(node)
        weights = [n for n in inner if hasattr(n, "sigma_w2")]
        acts = [activation_name(n.activation) for n in inner if hasattr(n, "activation")]
        rows.append(
            {
                "path": node.path,
                "kind": node.kind,
                "in_shape": in_shape,
                "out_shape": out_shape,
                "sigma_w2": _distinct([n.sigma_w2 for n in weights]),
                "sigma_b2": _distinct([n.sigma_b2 for n in weights]),
                "activation": _distinct(acts),
                "depth": depth(node),
                "times": getattr(node, "times", 1),
            }
        )
    return rows
