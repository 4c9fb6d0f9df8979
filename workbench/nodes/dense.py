"""Fully connected layer: ``dense {width, sigma_w2?, sigma_b2?, init?}`` on a flat input."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.spec import fields
from workbench.spec.model import Dense
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.spec.layers import Context

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


def parse(value: object, where: Where, ctx: Context, in_shape: Shape) -> Dense:
    """Validate ``value`` (the mapping under ``dense``) and build the node."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    sigma_w2, sigma_b2 = fields.weight_variances(values, at, ctx.defaults)
    return Dense(
        values["width"], sigma_w2, sigma_b2, values["init"], path=where.path, line=where.line
    )


def output_shape(node: Dense, in_shape: Shape, where: Where) -> Shape:
    """(C,) -> (width,); a spatial input is an error."""
    if len(in_shape) != 1:
        raise where.error(
            f"dense needs a flat input (C,), but its input has shape {show_shape(in_shape)}",
            "insert `- flatten` or `- pool: global_avg` before this layer",
        )
    return (node.width,)
