"""Residual block: ``residual {body, scale?}`` computes x + scale * body(x)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext, chain_shape, require_same_shape
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

KIND = "residual"
BARE = False
EXAMPLE = "residual: {body: [{dense: {width: 512}}, {act: relu}]}"
SCHEMA = fields.Schema(
    {
        "body": fields.Key(lambda v, w: v, doc="list of layers (non-empty, shape-preserving)"),
        "scale": fields.Key(fields.real, 1.0, "weight of the body branch"),
    }
)


@dataclass(frozen=True)
class Residual(NodeBase):
    """x + scale · body(x)."""

    kind: ClassVar[str] = KIND
    body: tuple[NodeBase, ...]
    scale: float = 1.0


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Residual:
    """Validate the keys, then parse the body against this block's input shape."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    body_at = at.at("body")
    body, out = ctx.body(values["body"], body_at, in_shape)
    require_same_shape(KIND, in_shape, out, body_at)
    return Residual(body=body, scale=values["scale"], path=where.path, line=where.line)


def output_shape(node: Residual, in_shape: Shape, where: Where) -> Shape:
    """The body must map the input shape to itself; so does the block."""
    require_same_shape(KIND, in_shape, chain_shape(node.body, in_shape, where.file), where)
    return tuple(in_shape)
