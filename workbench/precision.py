"""Precision contexts: one code path, two number systems.

``Float64()`` computes with numpy float64; ``Mp(digits)`` with mpmath at ``digits`` significant
digits (plus guard digits). Theory code asks the context for its arithmetic (``ctx.log``,
``ctx.sqrt``...) and never branches on the precision itself (DESIGN.md, "Precision").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

GUARD_DIGITS = 10


@dataclass(frozen=True)
class Float64:
    """IEEE double precision (about 16 significant digits)."""

    digits: int | None = None
    name: str = "float64"

    @property
    def eps(self) -> float:
        return float(np.finfo(np.float64).eps)

    def num(self, value: Any) -> float:
        return float(value)

    def sqrt(self, x: Any) -> float:
        return math.sqrt(x)

    def log(self, x: Any) -> float:
        return math.log(x)

    def exp(self, x: Any) -> float:
        return math.exp(x)

    @property
    def pi(self) -> float:
        return math.pi

    def isfinite(self, x: Any) -> bool:
        return math.isfinite(x)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield

    def to_json(self, x: Any) -> float:
        return float(x)


@dataclass(frozen=True)
class Mp:
    """mpmath arbitrary precision carrying ``digits`` significant digits."""

    digits: int = 50
    name: str = "mpmath"

    @property
    def eps(self) -> Any:
        return mpmath.mpf(10) ** (-self.digits - GUARD_DIGITS // 2)

    def num(self, value: Any) -> Any:
        with self.active():
            return mpmath.mpf(value) if not isinstance(value, str) else mpmath.mpf(value)

    def sqrt(self, x: Any) -> Any:
        return mpmath.sqrt(x)

    def log(self, x: Any) -> Any:
        return mpmath.log(x)

    def exp(self, x: Any) -> Any:
        return mpmath.exp(x)

    @property
    def pi(self) -> Any:
        return +mpmath.pi

    def isfinite(self, x: Any) -> bool:
        return bool(mpmath.isfinite(x))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with mpmath.workdps(self.digits + GUARD_DIGITS):
            yield

    def to_json(self, x: Any) -> str:
        return mpmath.nstr(x, self.digits, strip_zeros=False, min_fixed=-4, max_fixed=self.digits)


Context = Float64 | Mp


def context(digits: int | None = None) -> Context:
    """The precision context for ``digits`` significant digits (None: float64)."""
    if digits is None:
        return Float64()
    if not isinstance(digits, int) or isinstance(digits, bool) or digits < 5 or digits > 1000:
        from workbench.errors import WorkbenchError

        raise WorkbenchError(
            f"--digits must be an integer between 5 and 1000, got {digits!r}",
            hint="use e.g. --digits 30; leave it out for float64",
        )
    return Mp(digits)


F64 = Float64()  # the shared float64 context
