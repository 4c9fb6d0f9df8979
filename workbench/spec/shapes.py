"""Shape helpers: formatting, and chaining node shape rules through a body."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from workbench import nodes
from workbench.spec.model import Node
from workbench.spec.where import Where

Shape = tuple[int, ...]


def show_shape(shape: Shape) -> str:
    """``(3, 32, 32)``, with the trailing comma dropped for 1-D shapes."""
    return "(" + ", ".join(str(n) for n in shape) + ")"


def walk_nodes(
    body: Iterable[Node], in_shape: Shape, file: str | None = None
) -> Iterator[tuple[Node, Shape, Shape]]:
    """Yield (node, in_shape, out_shape) through ``body`` in order, never unrolling repeats."""
    shape = in_shape
    for node in body:
        where = Where(node.path, node.line, file)
        out = nodes.NODE_KINDS[node.kind].output_shape(node, shape, where)
        yield node, shape, out
        shape = out


def chain_shape(body: Iterable[Node], in_shape: Shape, file: str | None = None) -> Shape:
    """The output shape of ``body`` applied to ``in_shape``."""
    shape = in_shape
    for _, _, out in walk_nodes(body, in_shape, file):
        shape = out
    return shape


def require_same_shape(kind: str, in_shape: Shape, out_shape: Shape, where: Where) -> None:
    """Bodies of repeat/residual must map a shape to itself."""
    if tuple(out_shape) != tuple(in_shape):
        raise where.error(
            f"the {kind} body changes the shape from {show_shape(in_shape)} "
            f"to {show_shape(out_shape)}",
            f"a {kind} body must keep the shape: make its last dense/conv output "
            f"{in_shape[0]} units/channels and do not flatten or pool inside it",
        )
