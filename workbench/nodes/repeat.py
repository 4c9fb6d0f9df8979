"""Repeat block: ``repeat {times, body}``, kept as a loop (never unrolled)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext, chain_shape, require_same_shape
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

KIND = "repeat"
BARE = False
EXAMPLE = "repeat: {times: 10, body: [{dense: {width: 512}}, {act: tanh}]}"
SCHEMA = fields.Schema(
    {
        "times": fields.Key(fields.positive_int, doc="number of repetitions (integer >= 1)"),
        "body": fields.Key(lambda v, w: v, doc="list of layers (non-empty, shape-preserving)"),
    }
)


@dataclass(frozen=True)
class Repeat(NodeBase):
    """``times`` passes of ``body``, kept as a loop (never unrolled)."""

    kind: ClassVar[str] = KIND
    times: int
    body: tuple[NodeBase, ...]


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Repeat:
    """Validate the keys, then parse the body once against this block's input shape."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    body_at = at.at("body")
    body, out = ctx.body(values["body"], body_at, in_shape)
    require_same_shape(KIND, in_shape, out, body_at)
    return Repeat(times=values["times"], body=body, path=where.path, line=where.line)


def output_shape(node: Repeat, in_shape: Shape, where: Where) -> Shape:
    """The body must map the input shape to itself; so does the block (at any ``times``)."""
    require_same_shape(KIND, in_shape, chain_shape(node.body, in_shape, where.file), where)
    return tuple(in_shape)
