"""Pooling: ``pool: global_avg`` averages every spatial position: (C, *S) -> (C,)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

KIND = "pool"
BARE = False
EXAMPLE = "pool: global_avg"
MODES = ("global_avg",)
_check_mode = fields.choice(*MODES)


@dataclass(frozen=True)
class Pool(NodeBase):
    """Global average pooling over every spatial position."""

    kind: ClassVar[str] = KIND
    mode: str = "global_avg"


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Pool:
    """The value is the pooling mode name."""
    return Pool(mode=_check_mode(value, where.at(KIND)), path=where.path, line=where.line)


def output_shape(node: Pool, in_shape: Shape, where: Where) -> Shape:
    """(C, *S) -> (C,); a flat input is an error."""
    if len(in_shape) < 2:
        raise where.error(
            f"pool needs a spatial input (C, L) or (C, H, W), got {show_shape(in_shape)}",
            "remove the pool (the input is already flat)",
        )
    return (in_shape[0],)
