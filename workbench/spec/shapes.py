"""Shapes: channels-first tuples, and how messages print them."""

from __future__ import annotations

Shape = tuple[int, ...]


def show_shape(shape: Shape) -> str:
    """``(3, 32, 32)``, with the trailing comma dropped for 1-D shapes."""
    return "(" + ", ".join(str(n) for n in shape) + ")"
