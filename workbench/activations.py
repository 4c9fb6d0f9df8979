"""Activation functions as sympy expressions in one real variable ``x``.

An ``Activation`` is a name plus a sympy expression in ``X``; derivatives come from sympy and
the expression is lambdified to numpy (float64, vectorised) and to mpmath (at the current
``mp.dps``) on demand, cached per expression (DESIGN.md, "Activations are sympy expressions").
Custom activations are parsed by ``workbench.expressions.parse_expression`` (no eval).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
import scipy.special
import sympy as sp

from workbench.errors import ExpressionError
from workbench.expressions import FUNCTIONS, X, did_you_mean, parse_expression

__all__ = ["IDENTITY", "X", "Activation", "NAMED", "parse_activation"]

NAMED: dict[str, sp.Expr] = {
    "linear": X,
    "relu": sp.Max(0, X),
    "tanh": sp.tanh(X),
    "erf": sp.erf(X),
    "sigmoid": 1 / (1 + sp.exp(-X)),
    "arctan": sp.atan(X),
    "softsign": X / (1 + sp.Abs(X)),
    "gelu": X / 2 * (1 + sp.erf(X / sp.sqrt(2))),
    "swish": X / (1 + sp.exp(-X)),
    "silu": X / (1 + sp.exp(-X)),
    "abs": sp.Abs(X),
    "softplus": sp.log(1 + sp.exp(X)),
}

# the logistic rewrite's cancel takes minutes on the chain-rule derivative of 20 nested
# sigmoids (1,660 operations); sigmoid's 7th derivative has 59, 5 nested sigmoids' 115
STABLE_FORM_OPS = 400
SIMPLIFY_OPS = 40  # parity tries sympy's simplify only on expressions this small
MAX_SIMPLIFY_SWITCHES = 3  # ... with at most this many steps, signs, abs, max or min
_SWITCHES = (sp.Heaviside, sp.sign, sp.Abs, sp.Max, sp.Min)
KINK_RANGE = 100  # kinks of periodic arguments are listed within [-KINK_RANGE, KINK_RANGE]
_FALLBACK_LIMIT = 10_000  # most non-finite float64 values re-evaluated with mpmath per call


@lru_cache(maxsize=256)
def _differentiate(expr: sp.Expr, order: int) -> sp.Expr:
    """sympy's derivative, once per expression (deep walks ask for φ′ at every layer)."""
    return sp.diff(expr, X, order)


@dataclass(frozen=True, slots=True)
class Activation:
    """A pointwise activation φ(x); equal and hashed by its expression only."""

    name: str = field(compare=False)
    expr: sp.Expr

    def __post_init__(self) -> None:
        if not isinstance(self.expr, sp.Basic):
            object.__setattr__(self, "expr", sp.sympify(self.expr, strict=True))

    def derivative(self, order: int = 1) -> Activation:
        """φ^(order) by sympy differentiation (Max(0, x)' is Heaviside(x))."""
        if not isinstance(order, int) or order < 0:
            raise ValueError(f"derivative order must be a non-negative int, got {order!r}")
        if order == 0:
            return self
        base = self.name if re.fullmatch(r"[\w']+", self.name) else f"({self.name})"
        suffix = "'" * order if order <= 3 else f"^({order})"
        return Activation(base + suffix, _differentiate(self.expr, order))

    def compose(self, inner: Activation) -> Activation:
        """The activation x ↦ self(inner(x))."""
        return Activation(f"{self.name}∘{inner.name}", self.expr.xreplace({X: inner.expr}))

    @property
    def numpy(self) -> Callable[[Any], np.ndarray]:
        """Vectorised float64 evaluation (array in, float64 array of the same shape out)."""
        return _numpy_function(self.expr)

    @property
    def mpmath(self) -> Callable[[Any], Any]:
        """Evaluation with mpmath at the current ``mp.dps`` (mpf in, mpf out)."""
        return _mpmath_function(self.expr)

    @property
    def torch(self) -> Callable[[Any], Any]:
        """φ on torch tensors, for the simulator (same expression as the theory's φ)."""
        return _torch_function(self.expr)

    @property
    def singularity_distance(self) -> float:
        """A lower bound on the distance from the real axis to the nearest complex singularity
        of φ (it sets quadrature panel widths at high precision); see ``_singularity_distance``."""
        return _singularity_distance(self.expr)

    @property
    def kinks(self) -> tuple[float, ...]:
        """Sorted real points where φ or one of its derivatives is not smooth."""
        return _kinks(self.expr)

    @property
    def parity(self) -> int:
        """+1 when φ(−x) = φ(x), −1 when φ(−x) = −φ(x), proved symbolically; 0 otherwise."""
        return _parity(self.expr)

    @property
    def latex(self) -> str:
        return sp.latex(self.expr)

    def positive_homogeneity(self) -> float | None:
        """k with φ(a x) = a^k φ(x) for every a > 0 (relu, linear: 1; step: 0), else None."""
        return _homogeneity(self.expr)


def parse_activation(value: str | Mapping[str, Any] | Activation) -> Activation:
    """An activation from a name ("tanh"), an expression text, or ``{"expr": "x*tanh(x)"}``."""
    if isinstance(value, Activation):
        return value
    if isinstance(value, Mapping):
        return _from_mapping(value)
    if not isinstance(value, str):
        raise ExpressionError(
            f"an activation is a name or {{expr: ...}}, got {type(value).__name__}",
            hint=f"names: {', '.join(NAMED)}",
        )
    text = value.strip()
    if text.lower() in NAMED:
        return Activation(text.lower(), NAMED[text.lower()])
    if re.search(r"\bx\b", text):
        return Activation(
            text, real_on_the_line(float64_constants(parse_expression(text), text), text)
        )
    if re.fullmatch(r"[A-Za-z_]\w*", text):
        raise _unknown_name(text)
    parse_expression(text)  # reports what is wrong with the text, if anything
    raise ExpressionError(
        f"activation {text!r} does not depend on x",
        hint='write an expression in x, or {expr: "..."} for a constant one',
    )


def _from_mapping(value: Mapping[str, Any]) -> Activation:
    for key in value:
        if key != "expr":
            raise ExpressionError(
                f"unknown activation key {key!r}", hint='the only key is expr, as in {expr: "x"}'
            )
    if "expr" not in value:
        raise ExpressionError("missing key 'expr'", hint='write {expr: "x * tanh(x)"}')
    text = value["expr"]
    if not isinstance(text, str):
        raise ExpressionError(f"expr must be a string, got {type(text).__name__}")
    expr = float64_constants(parse_expression(text), text.strip())
    return Activation(text.strip(), real_on_the_line(expr, text.strip()))


# x where the activations' real-valuedness is probed: a fine grid, then out to 1e12
_REAL_PROBE = np.concatenate([np.linspace(-60, 60, 24_001), np.logspace(2, 12, 41),
                              -np.logspace(2, 12, 41)])  # fmt: skip


FLOAT64_CONSTANT = 1e300  # constants past this magnitude cannot be evaluated in float64


def float64_constants(expr: sp.Expr, text: str) -> sp.Expr:
    """``expr`` when every number in it is within float64's range (10**400 parses exactly, then
    overflows every numeric route: a TypeError or OverflowError far from the spec)."""
    for atom in expr.atoms(sp.Number):
        if abs(atom) > FLOAT64_CONSTANT:
            digits = sp.sstr(atom)
            shown = digits if len(digits) < 40 else f"about 1e{int(sp.log(abs(atom), 10))}"
            raise ExpressionError(
                f"activation {text!r} has a constant beyond float64's range ({shown})",
                hint="constants must lie within ±1e300",
            )
    return expr


def real_on_the_line(expr: sp.Expr, text: str) -> sp.Expr:
    """``expr`` when φ is real for every real x, else an ExpressionError naming the first
    offending subexpression and a point where it leaves the reals: a log or fractional power
    of an argument that is negative somewhere (innermost first; proved non-negative by sympy,
    or probed on a grid over ±60 and out to ±1e12)."""
    if expr.has(sp.I):
        raise ExpressionError(
            f"activation {text!r} is complex", hint="an activation must be real: drop the I"
        )
    for node in sp.postorder_traversal(expr):
        if isinstance(node, sp.log):
            arg, what = node.args[0], "log"
        elif isinstance(node, sp.Pow) and node.exp.is_integer is not True:
            arg, what = node.base, f"the power {node.exp}"
        else:
            continue
        if arg.is_nonnegative:
            continue
        where = _negative_at(arg)
        if where is not None:
            raise ExpressionError(
                f"activation {text!r} is not real on the whole line: {what} of {arg} "
                f"is taken where {arg} < 0 (at x = {where:.6g})",
                hint="keep the argument non-negative, e.g. sqrt(abs(x)), sqrt(relu(x)) or "
                "log(1 + x**2)",
            )
    return expr


def _negative_at(arg: sp.Expr) -> float | None:
    if not arg.has(X):
        value = complex(arg.evalf(30))
        return 0.0 if value.real < 0 else None
    values = _numpy_function(arg)(_REAL_PROBE)
    negative = _REAL_PROBE[values < 0]
    return float(negative[np.argmin(np.abs(negative))]) if negative.size else None


def _unknown_name(text: str) -> ExpressionError:
    guess = did_you_mean(text, list(NAMED))
    if text in FUNCTIONS:
        guess = f"to use the function {text}, write an expression such as {text}(x)"
    names = ", ".join(NAMED)
    return ExpressionError(
        f"unknown activation {text!r}",
        hint=f"{guess}; known names: {names}" if guess else f"known names: {names}",
    )


# --- numerical evaluation ---------------------------------------------------------------------

_STEP = sp.Function("wb_step")
_SOFTPLUS = sp.Function("wb_softplus")
_ERFC = sp.Function("wb_erfc")  # sympy would turn erfc(-a) back into 2 - erfc(a)


def _stable_form(expr: sp.Expr) -> sp.Expr:
    """Rewrite for evaluation: distributions and cancellations replaced by stable forms.

    DiracDelta → 0 (a.e.); Heaviside(a, h0) → step placeholder; log(1 + exp(a)) → softplus
    placeholder; c ± c·erf(a) → c·erfc(∓a); c - c·tanh(a)² → c/cosh(a)².
    """
    expr = expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    expr = expr.replace(
        lambda e: isinstance(e, sp.Heaviside),
        lambda e: _STEP(e.args[0], e.args[1] if len(e.args) > 1 else sp.S.Half),
    )
    expr = expr.replace(
        lambda e: _softplus_arg(e) is not None, lambda e: _SOFTPLUS(_softplus_arg(e))
    )
    expr = _logistic_in_tanh(expr)
    return expr.replace(lambda e: e.is_Add, _stable_add)


def _logistic_in_tanh(expr: sp.Expr) -> sp.Expr:
    """Logistic forms 1/(1 + e^{cx}) (sigmoid, swish and their derivatives) as rational
    functions of t = tanh(cx/2), using e^{cx} = (1 + t)/(1 − t): e^{−x}/(1 + e^{−x})² becomes
    (1 − t²)/4, finite for every x, where the exponential form is inf/inf = nan past |x| ≈ 709
    (which Gaussian integrals at q ≳ 10⁴ reach)."""
    exps = {e for e in expr.atoms(sp.exp) if e.args[0].is_polynomial(X)
            and sp.degree(e.args[0], X) == 1 and e.args[0].subs(X, 0) == 0}  # fmt: skip
    powers = [p for p in expr.atoms(sp.Pow) if p.exp.is_negative]
    logistic = [e for e in exps if any(p.base == 1 + e for p in powers)]
    if not logistic or sp.count_ops(expr) > STABLE_FORM_OPS:
        return expr
    t = sp.Dummy("t")
    for e in logistic:
        half = e.args[0] / 2
        expr = sp.cancel(expr.subs(e, (1 + t) / (1 - t))).subs(t, sp.tanh(half))
        expr = sp.expand(expr)
    return expr


def _softplus_arg(e: sp.Expr) -> sp.Expr | None:
    """a when e is log(1 + exp(a)), else None."""
    if not isinstance(e, sp.log) or not e.args[0].is_Add:
        return None
    const, rest = e.args[0].as_coeff_Add()
    return rest.args[0] if const == 1 and isinstance(rest, sp.exp) else None


def _stable_add(add: sp.Expr) -> sp.Expr:
    const, rest = add.as_coeff_Add()
    if const == 0:
        return add
    for term in sp.Add.make_args(rest):
        coeff, core = term.as_coeff_Mul()
        if isinstance(core, sp.erf) and abs(coeff) == abs(const):
            arg = core.args[0]
            return rest - term + const * _ERFC(-arg if coeff == const else arg)
        if core.is_Pow and isinstance(core.base, sp.tanh) and core.exp == 2 and coeff == -const:
            return rest - term + const / sp.cosh(core.base.args[0]) ** 2
    return add


def _np_step(a: Any, h0: Any) -> np.ndarray:
    return np.heaviside(a, float(h0))


def _mp_step(a: Any, h0: Any) -> Any:
    return mpmath.mpf(0) if a < 0 else mpmath.mpf(1) if a > 0 else mpmath.mpf(h0)


# |arguments| of exp, sinh and cosh past which mpmath answers ±inf or 0: the exact value's
# exponent would be a Python integer of millions of digits (exp(exp(exp(exp(x)))) ran for
# minutes); no Gaussian expectation can use such a value at any precision
MP_EXP_LIMIT = 1e6


def _mp_guarded(fn: Callable[[Any], Any], below: Any) -> Callable[[Any], Any]:
    """``fn`` answering inf past +MP_EXP_LIMIT and ``below`` past −MP_EXP_LIMIT."""

    def call(a: Any) -> Any:
        if isinstance(a, mpmath.mpf | int | float) and abs(a) > MP_EXP_LIMIT:
            return mpmath.inf if a > 0 else below
        return fn(a)

    return call


_mp_exp = _mp_guarded(mpmath.exp, below=mpmath.mpf(0))


def _mp_softplus(a: Any) -> Any:
    return mpmath.log1p(_mp_exp(a))


_NP_NAMESPACE = {
    "wb_step": _np_step,
    "wb_softplus": lambda a: np.logaddexp(0.0, a),
    "wb_erfc": scipy.special.erfc,
    "erf": scipy.special.erf,
    "erfc": scipy.special.erfc,
}
_MP_NAMESPACE = {"wb_step": _mp_step, "wb_softplus": _mp_softplus, "wb_erfc": mpmath.erfc,
                 "exp": _mp_exp, "sinh": _mp_guarded(mpmath.sinh, below=-mpmath.inf),
                 "cosh": _mp_guarded(mpmath.cosh, below=mpmath.inf)}  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _mpmath_function(expr: sp.Expr) -> Callable[[Any], Any]:
    raw = sp.lambdify(X, _stable_form(expr), modules=[_MP_NAMESPACE, "mpmath"])

    def evaluate(x: Any) -> Any:
        value = raw(mpmath.mpf(x))
        if isinstance(value, mpmath.mpc):
            return value.real if value.imag == 0 else mpmath.mpf("nan")
        return mpmath.mpf(value)

    return evaluate


@functools.lru_cache(maxsize=1024)
def _numpy_function(expr: sp.Expr) -> Callable[[Any], np.ndarray]:
    raw = sp.lambdify(X, _stable_form(expr), modules=[_NP_NAMESPACE, "scipy", "numpy"])
    exact = _mpmath_function(expr)

    def evaluate(x: Any) -> np.ndarray:
        xs = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = np.array(np.broadcast_to(raw(xs), xs.shape), dtype=np.float64)
        bad = ~np.isfinite(out) & np.isfinite(xs)
        if bad.any() and np.count_nonzero(bad) <= _FALLBACK_LIMIT:
            out[bad] = [_float_at(exact, v) for v in xs[bad]]
        return out

    return evaluate


def _torch_namespace() -> dict[str, Any]:
    """Names the plain lambdify printer emits, bound to torch functions (sympy's own torch
    printer rejects Python-number arguments and unknown placeholders)."""
    import torch

    F64 = torch.float64

    def tensors(fn: Callable) -> Callable:
        """Numbers become 0-d float64 tensors (which do not upcast float32 arguments)."""

        def call(*args: Any) -> Any:
            return fn(
                *(a if torch.is_tensor(a) else torch.tensor(float(a), dtype=F64) for a in args)
            )

        return call

    def fold(fn: Callable) -> Callable:
        return tensors(lambda *args: functools.reduce(fn, args))

    names = {
        "sqrt": torch.sqrt, "exp": torch.exp, "log": torch.log, "sin": torch.sin,
        "cos": torch.cos, "tan": torch.tan, "tanh": torch.tanh, "sinh": torch.sinh,
        "cosh": torch.cosh, "atan": torch.atan, "erf": torch.special.erf,
        "erfc": torch.special.erfc, "abs": torch.abs, "wb_sign": torch.sign,
        "wb_erfc": torch.special.erfc,
        "wb_softplus": lambda a: torch.logaddexp(torch.zeros_like(a), a),
        "wb_step": lambda a, h0: torch.heaviside(a, torch.full_like(a, float(h0))),
    }  # fmt: skip
    return {
        **{name: tensors(fn) for name, fn in names.items()},
        "max": fold(torch.maximum),
        "min": fold(torch.minimum),
    }


@functools.lru_cache(maxsize=1024)
def _torch_function(expr: sp.Expr) -> Callable[[Any], Any]:
    """φ on torch tensors (autograd-friendly), from the same stable form as the numpy path,
    constants folded to 30-digit floats."""
    import torch

    folded = _stable_form(expr).evalf(30).replace(sp.sign, sp.Function("wb_sign"))
    raw = sp.lambdify(X, folded, modules=[_torch_namespace()])

    def evaluate(x: Any) -> Any:
        out = raw(x)
        return out if torch.is_tensor(out) else torch.full_like(x, float(out))

    return evaluate


def _float_at(exact: Callable[[Any], Any], x: float) -> float:
    """float64 value of φ(x) from mpmath (overflowing intermediates such as exp(1000)/exp(1000))."""
    with mpmath.workdps(20):
        try:
            return float(exact(x))
        except (ZeroDivisionError, ValueError, OverflowError):
            return float("nan")


# --- symbolic properties ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _kinks(expr: sp.Expr) -> tuple[float, ...]:
    points: set[float] = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Abs | sp.sign | sp.Heaviside | sp.DiracDelta):
            points.update(_real_zeros(node.args[0]))
        elif isinstance(node, sp.Max | sp.Min):
            points.update(_switch_points(node))
        elif isinstance(node, sp.Piecewise):
            for cond in node.args:
                for rel in cond.cond.atoms(sp.core.relational.Relational):
                    points.update(_real_zeros(rel.lhs - rel.rhs))
    return tuple(sorted(float(p) + 0.0 for p in points))


def _switch_points(node: sp.Expr) -> set[float]:
    """Where the attaining argument of Max/Min changes: points where two args tie at the top
    (every argument evaluated at every candidate at once, in float64)."""
    args = node.args
    values: set[float] = set()
    for i, a in enumerate(args):
        for b in args[i + 1 :]:
            points = np.array(sorted(_real_zeros(a - b)), dtype=float)
            if not points.size:
                continue
            at = np.array([_numpy_function(arg)(points) for arg in args])
            top = at.max(axis=0) if isinstance(node, sp.Max) else at.min(axis=0)
            mine = _numpy_function(a)(points)
            values.update(points[np.abs(mine - top) <= 1e-12 * (1 + np.abs(top))].tolist())
    return values


def _real_zeros(arg: sp.Expr) -> set[float]:
    """Real zeros of ``arg`` in x (periodic families: those within ±KINK_RANGE)."""
    if not arg.has(X):
        return set()
    try:  # an infinite family (an ImageSet) goes to the grid: intersecting is slow
        found = sp.solveset(arg, X, domain=sp.S.Reals)
    except Exception:
        found = None
    if isinstance(found, sp.FiniteSet) and all(p.is_real for p in found):
        return {float(p) for p in found}
    return _numeric_zeros(arg)


def _numeric_zeros(arg: sp.Expr) -> set[float]:
    """Sign changes of ``arg`` on a grid over ±KINK_RANGE, refined by bisection (all
    intervals at once), and grid points where it is exactly 0 with non-zero neighbours that
    a 30-digit evaluation confirms (min(softplus(x), x) has softplus(x) − x round to 0 past
    x ≈ 37 without ever vanishing: no kink there)."""
    f = _numpy_function(arg)
    grid = np.linspace(-KINK_RANGE, KINK_RANGE, 20_001)
    values = f(grid)
    zeros: set[float] = set()
    exact = np.flatnonzero(values == 0)
    exact = exact[(exact > 0) & (exact < len(grid) - 1)]
    exact = exact[(values[exact - 1] != 0) & (values[exact + 1] != 0)]
    mp_arg = _mpmath_function(arg)
    with mpmath.workdps(30):
        zeros.update(float(grid[i]) for i in exact if abs(mp_arg(grid[i])) < 1e-25)
    changes = np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)
    lo, hi = grid[changes], grid[changes + 1]
    sign_lo = np.sign(values[changes])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        left = np.sign(f(mid)) != sign_lo
        lo, hi = np.where(left, lo, mid), np.where(left, mid, hi)
    zeros.update((0.5 * (lo + hi)).tolist())
    return zeros


def _probe_points() -> list[sp.Rational]:
    return [sp.Rational(n, 7) for n in (1, 3, 5, 11, 23, 50, 131)]


@functools.lru_cache(maxsize=1024)
def _parity(expr: sp.Expr) -> int:
    """+1 or −1 when proved symbolically, tried only for a sign that φ's values at the probe
    points make plausible (finite and mirrored to 1e-9): expanding or simplifying 23 nested
    exps or 46 nested sigmoids took minutes for a parity that a few values rule out."""
    mirrored = expr.xreplace({X: -X})
    points = np.array([float(p) for p in _probe_points()])
    f = _numpy_function(expr)
    with np.errstate(all="ignore"):
        at, mirror = np.asarray(f(points), float), np.asarray(f(-points), float)
    finite = bool(np.isfinite(at).all() and np.isfinite(mirror).all())
    simplify_ok = sp.count_ops(expr) <= SIMPLIFY_OPS and (  # simplify's time is unbounded
        sum(isinstance(n, _SWITCHES) for n in sp.preorder_traversal(expr))
        <= MAX_SIMPLIFY_SWITCHES  # nested steps: simplify's time doubles per level
    )
    for sign in (1, -1):
        difference = mirrored - sign * expr
        if difference == 0:
            return sign
        if not finite or not np.allclose(mirror, sign * at, rtol=1e-9, atol=1e-12):
            continue
        if sp.expand(difference) == 0:
            return sign
        if simplify_ok and sp.simplify(difference) == 0:  # e.g. sigmoid(x) − 1/2
            return sign
    return 0


@functools.lru_cache(maxsize=1024)
def _homogeneity(expr: sp.Expr) -> float | None:
    """Degree k of positive homogeneity, decided on each half-line with a positive symbol."""
    if not _may_be_homogeneous(expr):
        return None
    p = sp.Symbol("p", positive=True)
    a = sp.Symbol("a", positive=True)
    degrees: set[sp.Expr] = set()
    for half in (expr.xreplace({X: p}), expr.xreplace({X: -p})):
        if half == 0:
            continue
        k = _candidate_degree(half, p)
        if k is None or not _proved_homogeneous(half, p, a, k):
            return None
        degrees.add(k)
    if len(degrees) > 1:
        return None
    k = degrees.pop() if degrees else sp.S.One  # φ ≡ 0 is homogeneous of every degree
    at_zero = expr.xreplace({X: sp.S.Zero})
    if k != 0 and at_zero.is_finite and at_zero != 0:
        return None
    return float(k)


def _may_be_homogeneous(expr: sp.Expr) -> bool:
    """The float64 necessary condition φ(2p)/φ(p) = 2^k, the same k at every probe point on
    each half-line, before any symbolic work (sympy's evalf of exp(exp(exp(exp(p)))) at
    p = 18.7 never finished)."""
    f = _numpy_function(expr)
    points = np.array([float(p) for p in _probe_points()])
    for side in (points, -points):
        at, twice = f(side), f(2 * side)
        if not (np.isfinite(at).all() and np.isfinite(twice).all()):
            return False
        if not at.any() and not twice.any():
            continue
        if not at.all():
            return False
        ratio = twice / at
        if (ratio <= 0).any() or np.ptp(np.log2(ratio)) > 1e-6:
            return False
    return _homogeneous_at_30_digits(expr)


def _homogeneous_at_30_digits(expr: sp.Expr) -> bool:
    """The same condition at 30 digits, to 1e-20, by the mpmath function: 20 nested
    sigmoids are constant to 1e-7 (they passed in float64), and sympy's exact evaluation of
    their degree took minutes."""
    f = _mpmath_function(expr)
    with mpmath.workdps(30):
        for sign in (1, -1):
            logs = []
            for point in _probe_points():
                x = sign * mpmath.mpf(point.p) / point.q
                try:
                    at, twice = f(x), f(2 * x)
                except (ZeroDivisionError, ValueError, OverflowError):  # 1/heaviside(x) at x < 0
                    return False
                if at == 0 and twice == 0:
                    continue
                if not (mpmath.isfinite(at) and mpmath.isfinite(twice)) or at * twice <= 0:
                    return False
                logs.append(mpmath.log(twice / at, 2))
            if logs and max(logs) - min(logs) > mpmath.mpf(10) ** -20:
                return False
    return True


def _candidate_degree(half: sp.Expr, p: sp.Symbol) -> sp.Expr | None:
    """k = p φ'(p) / φ(p) if it is (numerically) the same rational at probe points, else None."""
    ratio = p * sp.diff(half, p) / half
    values = []
    for point in _probe_points():
        try:
            value = complex(ratio.xreplace({p: point}).evalf(30))
        except (TypeError, ValueError):
            return None
        values.append(value)
    first = values[0]
    if abs(first.imag) > 1e-20 or any(abs(v - first) > 1e-20 * (1 + abs(first)) for v in values):
        return None
    return sp.nsimplify(first.real, rational=True, tolerance=1e-12)


def _proved_homogeneous(half: sp.Expr, p: sp.Symbol, a: sp.Symbol, k: sp.Expr) -> bool:
    difference = half.xreplace({p: a * p}) - a**k * half
    if difference == 0:
        return True
    try:
        return sp.simplify(sp.powsimp(sp.expand_power_base(difference, force=True))) == 0
    except Exception:
        return False


_ENTIRE = (sp.exp, sp.erf, sp.sin, sp.cos, sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign)


@functools.lru_cache(maxsize=1024)
def _singularity_distance(expr: sp.Expr) -> float:
    """tanh(a x): π/(2|a|); atan(a x): 1/|a|; sums, products and integer powers of entire
    pieces (polynomials, exp, erf, sin, cos, and the piecewise max/abs/step with their kinks on
    the real axis): ∞; 1/(1 + exp(a x)) and its powers: π/|a|; anything else (quotients,
    roots, logs): a conservative 1/2."""
    if not expr.has(X):
        return math.inf
    if expr == X:
        return math.inf
    if isinstance(expr, sp.tanh | sp.atan):
        inner = expr.args[0]
        slope = sp.diff(inner, X)
        if slope.is_number and slope != 0 and sp.diff(slope, X) == 0:
            base = math.pi / 2 if isinstance(expr, sp.tanh) else 1.0
            size = abs(float(slope))  # 0.0 for a slope below float64's range (10**-400)
            return min(base / size if size else math.inf, _singularity_distance(inner))
        return 0.5
    if isinstance(expr, sp.Pow):
        if expr.exp.is_Integer and expr.exp > 0:
            return _singularity_distance(expr.base)
        if expr.exp.is_Integer and expr.exp < 0:
            return _logistic_distance(expr.base)
        return 0.5
    if isinstance(expr, (sp.Add, sp.Mul, *_ENTIRE)):
        return min(_singularity_distance(arg) for arg in expr.args)
    return 0.5


def _logistic_distance(denominator: sp.Expr) -> float:
    """1/(1 + exp(a x)) has its poles at a x = iπ(2m + 1): distance π/|a|; else 1/2."""
    m = denominator.match(1 + sp.exp(_SLOPE * X))
    if m and m.get(_SLOPE) is not None and m[_SLOPE].is_number and m[_SLOPE] != 0:
        size = abs(float(m[_SLOPE]))
        return math.pi / size if size else math.inf
    return 0.5


_SLOPE = sp.Wild("slope", exclude=[X])


IDENTITY = Activation("linear", X)  # what a weight layer reads when no activation precedes it
