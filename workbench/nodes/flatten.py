"""Flatten: ``- flatten`` (or ``{flatten: {}}``): (C, *S) -> (C * prod(S),)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from workbench.spec import fields
from workbench.spec.model import Flatten
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.spec.layers import Context

KIND = "flatten"
BARE = True
EXAMPLE = "flatten"
SCHEMA = fields.Schema({})


def parse(value: object, where: Where, ctx: Context, in_shape: Shape) -> Flatten:
    """Bare ``flatten`` (value None) or an empty mapping."""
    SCHEMA.read({} if value is None else value, where.at(KIND), "write `- flatten`")
    return Flatten(path=where.path, line=where.line)


def output_shape(node: Flatten, in_shape: Shape, where: Where) -> Shape:
    """All dims multiplied together (a flat input stays as it is)."""
    return (math.prod(in_shape),)
