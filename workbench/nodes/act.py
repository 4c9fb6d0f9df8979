"""Pointwise activation: ``act: tanh`` or ``act: {expr: "..."}`` (see workbench.activations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from workbench.errors import ExpressionError
from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.activations import Activation

KIND = "act"
BARE = False
EXAMPLE = "act: tanh"
SCHEMA = fields.Schema({"expr": fields.Key(fields.text, doc="activation expression in x")})
_FORM_HINT = 'write `act: tanh` (a name) or `act: {expr: "x * tanh(x)"}`'


@dataclass(frozen=True)
class Act(NodeBase):
    """A pointwise activation φ (a whitelisted sympy expression in x)."""

    kind: ClassVar[str] = KIND
    activation: Activation


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Act:
    """Check the form of ``value`` and hand it to ``parse_activation``."""
    from workbench.activations import parse_activation

    at = where.at(KIND)
    if isinstance(value, Mapping):
        raw: object = {"expr": SCHEMA.read(value, at)["expr"]}
        at = at.at("expr")
    elif isinstance(value, str) and value.strip():
        raw = value
    else:
        raise at.error(
            f"expected an activation name or {{expr: ...}}, got "
            f"{fields.type_name(value)} {fields.show(value)}",
            _FORM_HINT,
        )
    try:
        activation = parse_activation(raw)
    except ExpressionError as exc:
        raise at.error(exc.message, exc.hint) from exc
    return Act(activation=activation, path=where.path, line=where.line)


def output_shape(node: Act, in_shape: Shape, where: Where) -> Shape:
    """Pointwise: the shape is unchanged."""
    return tuple(in_shape)
