"""Flatten: ``- flatten`` (or ``{flatten: {}}``): (C, *S) -> (C * prod(S),)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

KIND = "flatten"
BARE = True
EXAMPLE = "flatten"
SCHEMA = fields.Schema({})


@dataclass(frozen=True)
class Flatten(NodeBase):
    """(C, *S) -> (C·prod(S),)."""

    kind: ClassVar[str] = KIND


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Flatten:
    """Bare ``flatten`` (value None) or an empty mapping."""
    SCHEMA.read({} if value is None else value, where.at(KIND), "write `- flatten`")
    return Flatten(path=where.path, line=where.line)


def output_shape(node: Flatten, in_shape: Shape, where: Where) -> Shape:
    """All dims multiplied together (a flat input stays as it is)."""
    return (math.prod(in_shape),)
