"""Scalar root finding written once for every precision context.

``polish_root`` refines a float64 estimate by Newton's method (or the secant method when no
derivative is given) in the context's arithmetic, staying inside a bracket when one is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.errors import TheoryError
from workbench.precision import Context


def polish_root(
    func: Callable[[Any], Any],
    x0: Any,
    ctx: Context,
    *,
    derivative: Callable[[Any], Any] | None = None,
    bracket: tuple[Any, Any] | None = None,
    max_iter: int = 60,
    what: str = "root",
) -> Any:
    """A root of ``func`` near ``x0`` to the context's precision.

    Newton steps (secant steps without ``derivative``); a step leaving ``bracket`` is replaced
    by bisection of the bracket, which is kept up to date from the signs of ``func``.
    """
    with ctx.active():
        tol = ctx.eps * 16
        x = ctx.num(x0)
        lo, hi = (ctx.num(bracket[0]), ctx.num(bracket[1])) if bracket else (None, None)
        f_lo = func(lo) if bracket else None
        fx = func(x)
        x_prev, f_prev = None, None
        for _ in range(max_iter):
            if fx == 0:
                return x
            if bracket:
                if (fx > 0) == (f_lo > 0):
                    lo, f_lo = x, fx
                else:
                    hi = x
            if derivative is not None:
                slope = derivative(x)
            elif x_prev is not None and x != x_prev:
                slope = (fx - f_prev) / (x - x_prev)
            else:
                slope = None
            if slope is None:
                step_to = x * (1 + 1e-7) + 1e-12
            elif slope == 0:
                step_to = None
            else:
                step_to = x - fx / slope
            if bracket and (step_to is None or not (min(lo, hi) <= step_to <= max(lo, hi))):
                step_to = (lo + hi) / 2
            if step_to is None:
                break
            x_prev, f_prev = x, fx
            x = step_to
            if abs(x - x_prev) <= tol * max(abs(x), ctx.num(ctx.tiny)):
                return x  # a step below the tolerance: converged, not worth one more func
            fx = func(x)
            if bracket and abs(hi - lo) <= tol * max(abs(x), ctx.eps):
                return x
        if abs(fx) <= tol * 1e3 * max(abs(x), 1):
            return x
        raise TheoryError(f"could not converge to the {what} (last estimate {x}, residual {fx})")
