"""Batch normalisation: ``bn`` or ``bn {gamma?, beta?}`` (shape-preserving)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

KIND = "bn"
BARE = True
EXAMPLE = "bn: {gamma: 1.0, beta: 0.0}"
SCHEMA = fields.Schema(
    {
        "gamma": fields.Key(fields.real, 1.0, "scale after normalisation"),
        "beta": fields.Key(fields.real, 0.0, "shift after normalisation"),
    }
)


@dataclass(frozen=True)
class BatchNorm(NodeBase):
    """Batch normalisation over the batch (and pixels) per channel, then γ·x + β."""

    kind: ClassVar[str] = KIND
    gamma: float = 1.0
    beta: float = 0.0


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> BatchNorm:
    """Bare ``bn`` (value None) or a mapping of gamma/beta."""
    values = SCHEMA.read({} if value is None else value, where.at(KIND), f"write `{EXAMPLE}`")
    return BatchNorm(gamma=values["gamma"], beta=values["beta"], path=where.path, line=where.line)


def output_shape(node: BatchNorm, in_shape: Shape, where: Where) -> Shape:
    """Shape-preserving."""
    return tuple(in_shape)
