"""Fully connected layer: ``dense {width, sigma_w2?, sigma_b2?, init?}`` on a flat input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

KIND = "dense"
BARE = False
EXAMPLE = "dense: {width: 512}"
INITS = ("gaussian", "orthogonal")
SCHEMA = fields.Schema(
    {
        "width": fields.Key(fields.positive_int, doc="number of output units"),
        "sigma_w2": fields.Key(fields.positive_real, None, "weight variance (else defaults)"),
        "sigma_b2": fields.Key(fields.nonnegative_real, None, "bias variance (else defaults)"),
        "init": fields.Key(fields.choice(*INITS), "gaussian", "weight distribution"),
    }
)


@dataclass(frozen=True)
class Dense(NodeBase):
    """A fully connected layer: W ~ N(0, σ_w²/fan_in) (or scaled orthogonal), b ~ N(0, σ_b²)."""

    kind: ClassVar[str] = KIND
    width: int
    sigma_w2: float
    sigma_b2: float
    init: str = "gaussian"  # gaussian | orthogonal


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Dense:
    """Validate ``value`` (the mapping under ``dense``) and build the node."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    sigma_w2, sigma_b2 = fields.weight_variances(values, at, ctx.defaults)
    return Dense(
        width=values["width"],
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        init=values["init"],
        path=where.path,
        line=where.line,
    )


def output_shape(node: Dense, in_shape: Shape, where: Where) -> Shape:
    """(C,) -> (width,); a spatial input is an error."""
    if len(in_shape) != 1:
        raise where.error(
            f"dense needs a flat input (C,), but its input has shape {show_shape(in_shape)}",
            "insert `- flatten` or `- pool: global_avg` before this layer",
        )
    return (node.width,)
