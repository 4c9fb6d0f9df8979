"""Safe parser for activation expressions in one real variable ``x``.

Activation functions are data (DESIGN.md, "Activations are sympy expressions in x"): the text
is parsed with ``ast.parse(text, mode="eval")`` and the syntax tree is walked node by node,
building sympy objects from a whitelist only. Nothing is ever evaluated as Python: no eval, no
exec, no compile-to-code, no sympify on raw text.

Grammar: int/float literals, the name ``x``, the constants ``pi`` and ``e``, binary
``+ - * / **``, unary ``+ -`` and calls of the functions in ``FUNCTIONS`` with their exact
arity. Constant expressions such as ``"0*x"`` (which is 0) are accepted: they are valid, if
degenerate, activations. Every failure, whatever the input, is an ``ExpressionError``.
"""

from __future__ import annotations

import ast
import cmath
import difflib
import math
from collections.abc import Callable

import sympy as sp

from workbench.errors import ExpressionError

X = sp.Symbol("x", real=True)

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_TREE_DEPTH = 100  # sympy's derivatives and printing recurse: 46 nested sigmoids overflowed
MAX_LITERAL = 1e15  # largest magnitude of a numeric literal
MAX_EXPONENT = 1000  # largest magnitude of a numeric exponent
MAX_DIGITS = 1000  # most decimal digits of a constant built while parsing
MIN_EXACT = 1e-15  # smaller nonzero float literals become sympy Floats, not exact rationals
MAX_ROOT = 1000  # constant bases get a float exponent when the exponent is p/q with q larger


def _power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """base**exponent without sympy's exact root extraction for roots of high order."""
    if base.is_number and exponent.is_Rational and exponent.q > MAX_ROOT:
        return base ** sp.Float(exponent, 30)
    return base**exponent


def _sigmoid(a: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-a))


def _softplus(a: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(a))


def _step(a: sp.Expr) -> sp.Expr:
    return sp.Heaviside(a, sp.S.Half)


EXTREMUM_BITS = 4000  # working precision allowed to order a constant argument of max/min


def _extremum(kind: type, *args: sp.Expr) -> sp.Expr:
    """Max/Min; constant arguments sympy cannot order exactly (such as
    −249 + log(1 + e^249)) are compared by their 50-digit values, computed with up to
    EXTREMUM_BITS bits of working precision to survive cancellation."""
    try:
        return kind(*args)
    except ValueError:
        pass
    numeric = [a.evalf(50, maxn=EXTREMUM_BITS) if not a.free_symbols else a for a in args]
    try:
        return kind(*numeric)
    except ValueError:
        raise ExpressionError(
            f"a constant argument of {kind.__name__.lower()}() needs more than "
            f"{EXTREMUM_BITS // 3} digits to compare",
            hint="simplify the constant",
        ) from None


def _relu(a: sp.Expr) -> sp.Expr:
    return _extremum(sp.Max, sp.S.Zero, a)


UNARY: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": lambda a: _power(a, sp.S.Half),
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "atan": sp.atan,
    "arctan": sp.atan,
    "sin": sp.sin,
    "cos": sp.cos,
    "abs": sp.Abs,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "softplus": _softplus,
    "heaviside": _step,
    "step": _step,
    "sign": sp.sign,
}
VARIADIC: dict[str, Callable[..., sp.Expr]] = {
    "max": lambda *args: _extremum(sp.Max, *args),
    "min": lambda *args: _extremum(sp.Min, *args),
}  # 2 or more args
FUNCTIONS: tuple[str, ...] = tuple(sorted((*UNARY, *VARIADIC)))
NAMES: dict[str, sp.Expr] = {"x": X, "pi": sp.pi, "e": sp.E}

_BINARY: dict[type[ast.operator], tuple[str, Callable[[sp.Expr, sp.Expr], sp.Expr]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
    ast.Pow: ("**", lambda a, b: _power(a, b)),
}
_OTHER_OPERATORS: dict[type, str] = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not", ast.Invert: "~",
}  # fmt: skip
_NOT_REAL = (sp.I, sp.zoo, sp.nan, sp.oo, -sp.oo)


def allowed_hint(extra: str = "") -> str:
    """The hint attached to every parse error: what the grammar allows."""
    text = (
        f"allowed: numbers, x, pi, e, + - * / ** and the functions {', '.join(FUNCTIONS)} "
        "(max/min take 2 or more arguments, the others exactly 1)"
    )
    return f"{extra}; {text}" if extra else text


def did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """'did you mean `w`?' for the closest choice (case-insensitive), or ''."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean `{lowered[close[0]]}`?" if close else ""


def parse_expression(text: str) -> sp.Expr:
    """Parse ``text`` into a real sympy expression in ``X``; raise ExpressionError otherwise."""
    if not isinstance(text, str):
        raise ExpressionError(
            f"an expression must be a string, got {type(text).__name__}", hint=allowed_hint()
        )
    source = text.strip()
    if not source:
        raise ExpressionError("empty expression", hint=allowed_hint())
    if len(source) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is {len(source)} characters long, more than {MAX_LENGTH}",
            hint="write a shorter expression",
        )
    tree = _syntax_tree(source)
    try:
        expr = _Builder(source).build(tree.body, depth=1)
    except ExpressionError:
        raise
    except Exception as exc:  # sympy failing on a legal but degenerate tree
        raise ExpressionError(
            f"cannot build expression {source!r}: {type(exc).__name__}: {exc}"[:300],
            hint=allowed_hint(),
        ) from None
    depth = _tree_depth(expr)
    if depth > MAX_TREE_DEPTH:
        raise ExpressionError(
            f"expression is nested {depth} levels deep once built (sigmoid(a) is "
            f"1/(1 + exp(-a)): three), more than {MAX_TREE_DEPTH}",
            hint="simplify the expression",
        )
    return _checked(expr, source)


def _tree_depth(expr: sp.Expr) -> int:
    """The sympy tree's depth, counted without recursion."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((arg, depth + 1) for arg in node.args)
    return deepest


def _syntax_tree(source: str) -> ast.Expression:
    try:
        return ast.parse(source, mode="eval")
    except SyntaxError as exc:
        line = f"line {exc.lineno}, " if exc.lineno and exc.lineno > 1 else ""
        where = f" at {line}column {exc.offset}" if exc.offset else ""
        raise ExpressionError(
            f"syntax error{where} in {source!r}: {exc.msg}", hint=allowed_hint()
        ) from None
    except Exception as exc:  # null bytes, parser recursion limits
        raise ExpressionError(
            f"cannot parse {source!r}: {type(exc).__name__}", hint=allowed_hint()
        ) from None


def _checked(expr: object, source: str) -> sp.Expr:
    if not isinstance(expr, sp.Expr):
        raise ExpressionError(f"{source!r} is not an expression", hint=allowed_hint())
    extra = expr.free_symbols - {X}
    if extra:
        raise ExpressionError(f"{source!r} depends on {sorted(map(str, extra))}, not only x")
    if _not_real(expr):
        raise ExpressionError(
            f"{source!r} is not a finite real expression (it is {str(expr)[:80]})",
            hint="avoid division by zero, log(0) and roots of negative constants",
        )
    return expr


def _not_real(expr: sp.Expr) -> bool:
    """Whether ``expr`` contains I, a complex or real infinity, or nan."""
    try:
        if any(expr.has(atom) for atom in _NOT_REAL):
            return True
        if expr.is_number and expr.is_real is not True:  # e.g. (e - pi)**pi
            value = complex(expr.evalf(20))
            return value.imag != 0 or not cmath.isfinite(value)
        return False
    except Exception:
        return True


FLOAT64_RANGE = (5e-324, 1.7976931348623157e308)  # smallest subnormal, largest finite


def _beyond_float64(expr: sp.Expr) -> bool:
    """Whether a constant (no x) is nonzero and outside float64's range: 10**400 became an
    exact exponent that sympy's kink search raised 1e15 to (minutes), 10**-400 is 0."""
    if expr.has(X) or not expr.is_number or expr.is_zero:
        return False
    try:
        value = expr.evalf(20)
        if not value.is_real or not value.is_finite:
            return False  # _not_real decides
        size = abs(value)
        lo, hi = FLOAT64_RANGE
        return bool(size > hi or size < lo)
    except Exception:
        return False


class _Builder:
    """Walks a Python expression tree and builds the sympy expression, whitelist only."""

    def __init__(self, source: str) -> None:
        self.source = source

    def where(self, node: ast.AST) -> str:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
        return f"column {col}" if line == 1 else f"line {line}, column {col}"

    def token(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.source, node) or type(node).__name__
        return segment if len(segment) <= 40 else segment[:37] + "..."

    def fail(self, what: str, node: ast.AST, extra: str = "") -> ExpressionError:
        return ExpressionError(
            f"{what} `{self.token(node)}` at {self.where(node)} is not allowed",
            hint=allowed_hint(extra),
        )

    def refuse(self, reason: str, node: ast.AST) -> ExpressionError:
        return ExpressionError(
            f"`{self.token(node)}` at {self.where(node)}: {reason}", hint=allowed_hint()
        )

    def build(self, node: ast.AST, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nested deeper than {MAX_DEPTH} at {self.where(node)}",
                hint="simplify the expression",
            )
        result = self.node(node, depth)
        if result.is_Rational and max(abs(result.p), result.q).bit_length() > 3.33 * MAX_DIGITS:
            raise self.refuse(f"constant with more than {MAX_DIGITS} digits", node)
        if _beyond_float64(result):
            raise self.refuse(
                "a constant beyond float64's range (the activation is evaluated in float64, "
                "and exact powers of such constants stall the symbolic probes)",
                node,
            )
        if _not_real(result):
            raise self.refuse(  # (printing the value may evaluate sinh(1e15) to 1e15 bits)
                "not a finite real value; avoid division by zero, log(0), roots of negative "
                "constants and constants beyond float64's range",
                node,
            )
        return result

    def node(self, node: ast.AST, depth: int) -> sp.Expr:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise self.fail(_describe(node), node)

    def constant(self, node: ast.Constant) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{type(value).__name__} literal", node)
        if not math.isfinite(value) or abs(value) > MAX_LITERAL:
            raise self.refuse(f"literal larger than {MAX_LITERAL:g} in magnitude", node)
        if isinstance(value, int):
            return sp.Integer(value)
        if value != 0 and abs(value) < MIN_EXACT:  # exact, it would carry a huge denominator
            return sp.Float(repr(value))
        # exact decimal value of the literal, so that mpmath evaluation is exact at any precision
        return sp.Rational(repr(value))

    def name(self, node: ast.Name) -> sp.Expr:
        if node.id in NAMES:
            return NAMES[node.id]
        extra = did_you_mean(node.id, [*NAMES, *FUNCTIONS])
        if node.id in FUNCTIONS:
            extra = f"`{node.id}` is a function: call it, e.g. {node.id}(x)"
        raise self.fail("name", node, extra)

    def unary(self, node: ast.UnaryOp, depth: int) -> sp.Expr:
        if isinstance(node.op, ast.USub):
            return -self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand, depth + 1)
        raise self.fail(f"operator '{_OTHER_OPERATORS.get(type(node.op), '?')}' in", node)

    def binary(self, node: ast.BinOp, depth: int) -> sp.Expr:
        if type(node.op) not in _BINARY:
            raise self.fail(f"operator '{_OTHER_OPERATORS.get(type(node.op), '?')}' in", node)
        symbol, combine = _BINARY[type(node.op)]
        # a flat chain such as x + x + ... + x is long, not deep: its left spine keeps the depth
        left = self.build(node.left, depth if isinstance(node.left, ast.BinOp) else depth + 1)
        right = self.build(node.right, depth + 1)
        if symbol == "**":
            self.check_power(left, right, node)
            return _power(left, right)
        return combine(left, right)

    def check_power(self, base: sp.Expr, exponent: sp.Expr, node: ast.BinOp) -> None:
        """Refuse powers whose exact value would be astronomically large (10**10**10)."""
        if not exponent.is_number:
            return
        size = abs(complex(exponent.evalf(15)))
        if size > MAX_EXPONENT:
            raise self.refuse(f"exponent larger than {MAX_EXPONENT} in magnitude", node)
        magnitude = abs(complex(base.evalf(15))) if base.is_number else 0.0
        if magnitude > 0:
            digits = size * abs(math.log10(magnitude))
            if digits > MAX_DIGITS:
                raise self.refuse(f"constant power with more than {MAX_DIGITS} digits", node)

    def call(self, node: ast.Call, depth: int) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail("call of", node.func)
        fname = node.func.id
        if fname not in UNARY and fname not in VARIADIC:
            raise self.fail("function", node.func, did_you_mean(fname, FUNCTIONS))
        if node.keywords:
            raise self.fail("keyword argument", node.keywords[0])
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail("starred argument", arg)
        args = [self.build(arg, depth + 1) for arg in node.args]
        if fname in VARIADIC:
            if len(args) < 2:
                raise self.refuse(f"{fname} takes 2 or more arguments, got {len(args)}", node)
            return VARIADIC[fname](*args)
        if len(args) != 1:
            raise self.refuse(f"{fname} takes exactly 1 argument, got {len(args)}", node)
        return UNARY[fname](args[0])


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscript",
        ast.Lambda: "lambda",
        ast.Compare: "comparison",
        ast.BoolOp: "boolean operator",
        ast.IfExp: "conditional expression",
        ast.JoinedStr: "f-string",
        ast.NamedExpr: "assignment expression",
        ast.ListComp: "comprehension",
        ast.SetComp: "comprehension",
        ast.DictComp: "comprehension",
        ast.GeneratorExp: "comprehension",
    }
    return kinds.get(type(node), f"{type(node).__name__.lower()}")
