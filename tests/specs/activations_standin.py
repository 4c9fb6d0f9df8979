"""Test stand-in for workbench.activations, used only while the real module is absent."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ExpressionError

NAMES = ("tanh", "relu", "erf", "linear", "sigmoid", "softplus", "sin")


@dataclass(frozen=True)
class Activation:
    name: str


def parse_activation(value: object) -> Activation:
    if isinstance(value, dict) and isinstance(value.get("expr"), str):
        text = value["expr"]
        if text.count("(") != text.count(")") or not set(text) <= set("xmaxtnh0123456789(), .*+-"):
            raise ExpressionError(f"cannot parse expression {text!r}", hint="use x, +, *, tanh")
        return Activation(text)
    if value in NAMES:
        return Activation(value)
    raise ExpressionError(f"unknown activation {value!r}", hint=f"known: {', '.join(NAMES)}")
