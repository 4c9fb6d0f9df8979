"""Batch normalisation: ``bn`` or ``bn {gamma?, beta?}`` (shape-preserving)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.spec import fields
from workbench.spec.model import BatchNorm
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.spec.layers import Context

KIND = "bn"
BARE = True
EXAMPLE = "bn: {gamma: 1.0, beta: 0.0}"
SCHEMA = fields.Schema(
    {
        "gamma": fields.Key(fields.real, 1.0, "scale after normalisation"),
        "beta": fields.Key(fields.real, 0.0, "shift after normalisation"),
    }
)


def parse(value: object, where: Where, ctx: Context, in_shape: Shape) -> BatchNorm:
    """Bare ``bn`` (value None) or a mapping of gamma/beta."""
    values = SCHEMA.read({} if value is None else value, where.at(KIND), f"write `{EXAMPLE}`")
    return BatchNorm(values["gamma"], values["beta"], path=where.path, line=where.line)


def output_shape(node: BatchNorm, in_shape: Shape, where: Where) -> Shape:
    """Shape-preserving."""
    return tuple(in_shape)
