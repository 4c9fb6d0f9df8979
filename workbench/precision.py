"""Precision contexts: one code path, two number systems (the pattern of mpmath's
FPContext/MPContext).

``Float64()`` computes with numpy float64; ``Mp(digits)`` with mpmath at ``digits`` significant
digits (plus guard digits). Theory code asks the context for its arithmetic (``ctx.log``,
``ctx.sqrt``...), tolerances, arrays (``array``, ``elementwise``), exact conversion
(``exact``), its numerical primitives (``function``, ``quad1``, ``quad2``) and what it can
serve (``fast_float64``, ``require_float64``), and never branches on the precision itself
(DESIGN.md, "Precision"): nothing outside this module reads a context's name.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import mpmath
import numpy as np

from workbench.errors import TheoryError, UnsupportedError, WorkbenchError

GUARD_DIGITS = 10


class ExactReal(float):
    """A float that remembers the exact number the user wrote (its decimal text as a
    Fraction): float64 code sees the nearest double, a precision context converts the exact
    value (``Mp.num``), so ``--digits 40`` answers for σ_b² = 0.05, not for the double
    0.05000000000000000277…"""

    fraction: Fraction

    def __new__(cls, value: Fraction) -> ExactReal:
        self = super().__new__(cls, float(value))
        self.fraction = value
        return self

    def __reduce__(self) -> tuple:
        return (ExactReal, (self.fraction,))

    def __repr__(self) -> str:
        return float.__repr__(self)


def exact_real(text: str) -> float:
    """The number written as ``text`` (decimal, or rational a/b): an ExactReal; a plain
    float where the text is no finite rational (inf, nan, past float64's range). Raises
    ValueError for text that is no number."""
    try:
        value = Fraction(text.strip().replace("_", ""))
        if math.isfinite(float(value)):
            return ExactReal(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        pass
    return float(text)


def exact_grid(start: float, stop: float, count: int) -> list[float]:
    """``count`` evenly spaced numbers from start to stop, each exact (np.linspace's values
    in float64; the exact rationals start + i (stop − start)/(count − 1) under --digits)."""
    a, b = exact_fraction(start), exact_fraction(stop)
    if count == 1:
        return [ExactReal(a)]
    return [ExactReal(a + (b - a) * i / (count - 1)) for i in range(count)]


def exact_fraction(value: Any) -> Fraction:
    """The exact rational value of a number: what the user wrote for an ExactReal, else the
    binary value of the float (exact too, but maybe not what was meant)."""
    if isinstance(value, ExactReal):
        return value.fraction
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(float(value))


def is_exact_input(value: Any) -> bool:
    """Whether ``value`` carries the number the user wrote (an int or an ExactReal)."""
    return isinstance(value, ExactReal | int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Float64:
    """IEEE double precision (about 16 significant digits)."""

    digits: int | None = None
    name: str = "float64"
    dtype: ClassVar[Any] = float  # numpy dtype of this context's arrays
    tiny: ClassVar[float] = 1e-300  # magnitudes below this are treated as zero in relative tests
    tolerance: ClassVar[float] = 1e-10  # |x − 1| within this is "equal to 1" (phases, depth scales)
    fast_float64: ClassVar[bool] = True  # the fused float64 program and interpolated maps serve it
    lib: ClassVar[Any] = np  # the module of elementary functions

    def describe(self) -> str:
        return "float64"

    def array(self, values: Any) -> np.ndarray:
        return np.asarray(values, float)

    def elementwise(self, fn: Any, *arrays: Any) -> Any:
        """fn over arrays: fn must be written with numpy operations (one vectorised call)."""
        return fn(*arrays)

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        return np.clip(x, lo, hi)

    def all_finite(self, values: np.ndarray, guard: float = math.inf) -> bool:
        return bool(np.isfinite(values).all() and np.abs(values).max(initial=0) < guard)

    def exact(self, value: Any) -> Any:
        """A sympy number equal to the value (the number the user wrote, for an ExactReal)."""
        import sympy as sp

        fraction = exact_fraction(value)
        return sp.Rational(fraction.numerator, fraction.denominator)

    def require_float64(self, what: str) -> None:
        """Refuse (in the other context) what only float64 computes."""

    def function(self, h: Any) -> Any:
        """An Activation as a function of this context's numbers."""
        return h.numpy

    def quad1(self, fn: Any, q: Any, kinks: tuple = (), even: bool = False,
              distance: float = math.inf) -> float:  # fmt: skip
        """∫ fn(√q z) Dz by the float64 rule (``gaussian.quadrature``); ``distance``: of fn's
        nearest complex singularity from the real axis."""
        from workbench.gaussian.quadrature import expect1_float64

        return expect1_float64(fn, float(q), kinks, distance)

    def quad2(self, f: Any, g: Any, q11: Any, q12: Any, q22: Any, distance: float) -> float:
        """E[f(u) g(v)] by the float64 two-point rule (f, g Activations)."""
        from workbench.gaussian.quadrature import expect2_float64

        return expect2_float64(f.numpy, g.numpy, q11, q12, q22, f.kinks, g.kinks, distance)

    def result(self, value: Any) -> float:
        return float(value)

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
    dtype: ClassVar[Any] = object
    fast_float64: ClassVar[bool] = False
    lib: ClassVar[Any] = mpmath

    @property
    def eps(self) -> Any:
        return mpmath.mpf(10) ** (-self.digits - GUARD_DIGITS // 2)

    @property
    def tiny(self) -> Any:
        return self.eps

    @property
    def tolerance(self) -> Any:
        return self.eps * 10**6

    def describe(self) -> str:
        return f"mpmath ({self.digits} digits)"

    def num(self, value: Any) -> Any:
        """``value`` at this precision: an ExactReal (a number the user wrote) rounded from
        its exact fraction, anything else as it is."""
        with self.active():
            if isinstance(value, ExactReal):
                fraction = value.fraction
                return mpmath.mpf(fraction.numerator) / fraction.denominator
            return mpmath.mpf(value)

    def array(self, values: Any) -> np.ndarray:
        with self.active():
            return np.vectorize(self.num, otypes=[object])(np.asarray(values))

    def elementwise(self, fn: Any, *arrays: Any) -> np.ndarray:
        """fn entry by entry (broadcast), each distinct argument tuple once."""
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=object) for a in arrays))
        out = np.empty(arrays[0].shape, dtype=object)
        cache: dict = {}
        with self.active():
            for index in np.ndindex(out.shape):
                key = tuple(a[index] for a in arrays)
                if key not in cache:
                    cache[key] = fn(*key)
                out[index] = cache[key]
        return out

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        return min(max(x, lo), hi)

    def all_finite(self, values: np.ndarray, guard: Any = None) -> bool:
        return all(self.isfinite(v) for v in np.ravel(values))

    def exact(self, value: Any) -> Any:
        """A sympy number carrying this context's digits (exact for an ExactReal)."""
        import sympy as sp

        if isinstance(value, ExactReal):
            return sp.Rational(value.fraction.numerator, value.fraction.denominator)
        return sp.Float(value, self.digits + GUARD_DIGITS)

    def require_float64(self, what: str) -> None:
        raise UnsupportedError(f"{what} are float64 only", hint="leave out --digits")

    def function(self, h: Any) -> Any:
        return h.mpmath

    def quad1(self, fn: Any, q: Any, kinks: tuple = (), even: bool = False,
              distance: float = math.inf) -> Any:  # fmt: skip
        """∫ fn(√q z) Dz by mpmath quadrature at this precision (tanh–sinh adapts by itself:
        ``distance`` is for the float64 rule)."""
        from workbench.gaussian.quadrature import expect1_mpmath

        return expect1_mpmath(fn, mpmath.mpf(q), kinks, even)

    def quad2(self, f: Any, g: Any, q11: Any, q12: Any, q22: Any, distance: float) -> Any:
        """E[f(u) g(v)]: Mehler's series where it converges (kinks only at 0), else mpmath
        quadrature."""
        from workbench.gaussian.hermite import expect2_mehler
        from workbench.gaussian.quadrature import expect2_mpmath

        value = None
        if not (*f.kinks, *g.kinks) or set((*f.kinks, *g.kinks)) == {0}:
            value = expect2_mehler(f.mpmath, g.mpmath, q11, q12, q22, f.singularity_distance,
                                   g.singularity_distance)  # fmt: skip
        if value is None:
            _refuse_a_sliver(f, q11)
            _refuse_a_sliver(g, q22)
            value = expect2_mpmath(f.mpmath, g.mpmath, q11, q12, q22, f.kinks, g.kinks)
        return value

    def result(self, value: Any) -> Any:
        return value

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
        raise WorkbenchError(
            f"--digits must be an integer between 5 and 1000, got {digits!r}",
            hint="use e.g. --digits 30; leave it out for float64",
        )
    return Mp(digits)


F64 = Float64()  # the shared float64 context


def _refuse_a_sliver(h: Any, q: Any) -> None:
    """High precision cannot vouch for a two-point expectation of an activation that turns
    within a sliver of the origin at this variance (its nearest complex singularity closer
    than 1e-3 in z = u/√q): nested tanh–sinh misses the thin strip around u = 0 (tanh′ at
    q = 1e40 came out 6e-4 off at 20 digits, at q ~ 1e320 wrong by 159 orders)."""
    from workbench.gaussian.hermite import MIN_POLE_DISTANCE

    distance = h.singularity_distance
    if 0 < distance < float("inf") and distance / mpmath.sqrt(q) < MIN_POLE_DISTANCE:
        width = mpmath.nstr(distance / mpmath.sqrt(q), 3)
        raise TheoryError(
            f"E[{h.name}(u) …] at variance {mpmath.nstr(q, 6)} cannot be vouched for at this "
            f"precision: {h.name} turns within {width} standard deviations of 0, which the "
            "high-precision quadrature does not resolve",
            hint="rescale the inputs (below ~1e150 the float64 route handles large variances "
            "exactly), or use a closed-form activation (relu, erf) at this precision",
        )
