"""Pooling: ``pool: global_avg`` averages every spatial position: (C, *S) -> (C,)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.spec import fields
from workbench.spec.model import Pool
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.spec.layers import Context

KIND = "pool"
BARE = False
EXAMPLE = "pool: global_avg"
MODES = ("global_avg",)
_check_mode = fields.choice(*MODES)


def parse(value: object, where: Where, ctx: Context, in_shape: Shape) -> Pool:
    """The value is the pooling mode name."""
    return Pool(_check_mode(value, where.at(KIND)), path=where.path, line=where.line)


def output_shape(node: Pool, in_shape: Shape, where: Where) -> Shape:
    """(C, *S) -> (C,); a flat input is an error."""
    if len(in_shape) < 2:
        raise where.error(
            f"pool needs a spatial input (C, L) or (C, H, W), got {show_shape(in_shape)}",
            "remove the pool (the input is already flat)",
        )
    return (in_shape[0],)
