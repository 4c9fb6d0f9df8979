"""The safe expression parser: whitelist grammar, typed errors, no evaluation of Python."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.activations import X as ACTIVATIONS_X
from workbench.errors import ExpressionError
from workbench.expressions import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, X, parse_expression

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_x_is_one_real_symbol_shared_with_activations() -> None:
    assert X is ACTIVATIONS_X
    assert X.is_real and X.name == "x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x", X),
        ("  x*tanh(x) ", X * sp.tanh(X)),
        ("2*x + 1", 2 * X + 1),
        ("x**3 - x/2", X**3 - X / 2),
        ("-x", -X),
        ("+x", X),
        ("pi*x", sp.pi * X),
        ("e**x", sp.exp(X)),
        ("0.1*x", X / 10),
        ("2**0.5*x", sp.sqrt(2) * X),
        ("exp(x) + log(x) + sqrt(x)", sp.exp(X) + sp.log(X) + sp.sqrt(X)),
        ("sinh(x) + cosh(x) + sin(x) + cos(x)", sp.sinh(X) + sp.cosh(X) + sp.sin(X) + sp.cos(X)),
        ("erf(x) + erfc(x)", sp.erf(X) + sp.erfc(X)),
        ("atan(x) - arctan(x)", sp.S.Zero),
        ("abs(x)", sp.Abs(X)),
        ("max(0, x)", sp.Max(0, X)),
        ("min(x, 1, -x)", sp.Min(1, X, -X)),
        ("relu(x)", sp.Max(0, X)),
        ("sigmoid(x)", 1 / (1 + sp.exp(-X))),
        ("softplus(x)", sp.log(1 + sp.exp(X))),
        ("heaviside(x)", sp.Heaviside(X, sp.S.Half)),
        ("step(x - 1)", sp.Heaviside(X - 1, sp.S.Half)),
        ("sign(x)", sp.sign(X)),
        ("0*x", sp.S.Zero),
        ("(1 + 2)", sp.Integer(3)),
    ],
)
def test_parses_whitelisted_grammar(text: str, expected: sp.Expr) -> None:
    result = parse_expression(text)
    assert sp.simplify(result - expected) == 0
    assert result.free_symbols <= {X}


def test_float_literals_are_exact_decimals() -> None:
    assert parse_expression("0.1") == sp.Rational(1, 10)
    assert parse_expression("1.0507009873554805*x") == sp.Rational("1.0507009873554805") * X


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("tnah(x)", ["`tnah`", "column 1", "did you mean `tanh`"]),
        ("x + sigmod(x)", ["`sigmod`", "column 5", "`sigmoid`"]),
        ("x + y", ["`y`", "column 5"]),
        ("exp", ["`exp`", "exp(x)"]),
        ("x.real", ["attribute", "`x.real`", "column 1"]),
        ("x[0]", ["subscript", "`x[0]`"]),
        ("tanh(x=1)", ["keyword", "column 6"]),
        ("lambda: x", ["lambda"]),
        ("[x for x in y]", ["comprehension"]),
        ("'x'", ["str literal"]),
        ("b'x'", ["bytes literal"]),
        ("True * x", ["bool literal"]),
        ("3j * x", ["complex literal"]),
        ("x // 2", ["'//'"]),
        ("x % 2", ["'%'"]),
        ("~x", ["'~'"]),
        ("x < 1", ["comparison"]),
        ("x if x else 1", ["conditional"]),
        ("f'{x}'", ["f-string"]),
        ("(y := x)", ["assignment"]),
        ("tanh(*x)", ["starred"]),
        ("tanh(x, x)", ["tanh takes exactly 1 argument, got 2"]),
        ("tanh()", ["tanh takes exactly 1 argument, got 0"]),
        ("max(x)", ["max takes 2 or more arguments, got 1"]),
        ("10**10**10", ["exponent larger than"]),
        ("x**(10**9)", ["exponent larger than"]),
        ("(10**100)**100", ["digits"]),
        ("exp(1000)**1000", ["beyond float64"]),
        ("x / 10**400", ["10**400", "beyond float64"]),
        ("x * exp(-800)", ["exp(-800)", "beyond float64"]),
        ("1e300 * x", ["literal larger than"]),
        ("1e999", ["literal larger than"]),
        ("x +", ["syntax error"]),
        ("x\n+ y", ["syntax error"]),
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("1/0", ["not a finite real", "`1/0` at column 1"]),
        ("x + sqrt(-1)", ["not a finite real", "`sqrt(-1)` at column 5"]),
        ("log(0) * x", ["not a finite real", "`log(0)`"]),
        ("max(x, log(0))", ["not a finite real", "`log(0)` at column 8"]),
        ("x / (x - x)", ["not a finite real"]),
        ("max(x, (e - pi)**pi)", ["not a finite real", "`(e - pi)**pi` at column 8"]),
        ("x" + "+x" * 300, ["characters long"]),
        ("-" * 60 + "x", [f"deeper than {MAX_DEPTH}"]),
        ("(" * 300 + "x" + ")" * 300, ["characters"]),
        ("(" * 210 + "x" + ")" * 210, ["parenthes"]),
        ("\x00", []),
    ],
)
def test_rejections_name_token_and_column(text: str, fragments: list[str]) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert info.value.hint  # every rejection says what is allowed


def test_hint_lists_the_allowed_functions() -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression("foo(x)")
    for name in FUNCTIONS:
        assert name in info.value.hint


@pytest.mark.parametrize("value", [None, 3, 1.5, b"x", ["x"], {"expr": "x"}])
def test_non_string_input_is_an_expression_error(value: object) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(value)  # type: ignore[arg-type]


def test_length_limit_is_inclusive() -> None:
    text = "x" + " " * (MAX_LENGTH - 2) + "+1"
    assert len(text) == MAX_LENGTH + 1
    with pytest.raises(ExpressionError):
        parse_expression(text)
    long_chain = "1*" * ((MAX_LENGTH - 1) // 2) + "x"  # long but flat: accepted
    assert parse_expression(long_chain) == X
    assert parse_expression(" + ".join(["x"] * 100)) == 100 * X


MALICIOUS = [
    "__import__('os').system('touch {flag}')",
    "exec(\"open('{flag}', 'w')\")",
    "eval(\"__import__('os').system('touch {flag}')\")",
    "open('{flag}', 'w')",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__",
    "getattr(x, '__class__')",
    "globals()",
    "__builtins__",
    "lambda: __import__('os').system('touch {flag}')",
    "(lambda f: f(f))(lambda f: f(f))",
    "x if __import__('os').system('touch {flag}') else x",
    'sympify(\'__import__("os").system("touch {flag}")\')',
    "Symbol('y')",
    "tanh(x).func",
    "exp(x)**exp(x)**10**10",
    "10**10**10**10",
    "9" * 400,
    "max(*[x]*10**9)",
    "'a' * 10**9",
]


@pytest.mark.parametrize("template", MALICIOUS)
def test_malicious_strings_are_refused_and_run_nothing(template: str, tmp_path: Path) -> None:
    flag = tmp_path / "pwned"
    with pytest.raises(ExpressionError):
        parse_expression(template.format(flag=flag))
    assert not flag.exists()


def test_parser_never_evaluates_python(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parser evaluated Python code")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(sp, "sympify", forbidden)
    monkeypatch.setattr(sp, "parse_expr", forbidden)
    assert parse_expression("x*tanh(x) + max(x, 0.1*x) - sigmoid(2*x)**2").has(sp.tanh)


def _parse_or_typed_error(text: str) -> None:
    try:
        result = parse_expression(text)
    except ExpressionError as exc:
        assert exc.message
        return
    assert isinstance(result, sp.Expr)
    assert result.free_symbols <= {X}
    assert not result.has(sp.I, sp.zoo, sp.nan, sp.oo)


@FUZZ
@given(st.text(max_size=80))
def test_fuzz_random_text(text: str) -> None:
    _parse_or_typed_error(text)


_GRAMMAR_CHARS = "x epi0123456789.+-*/()%,[]'_ \tabcdefghijklmnopqrstuvwxyz"


@FUZZ
@given(st.text(alphabet=_GRAMMAR_CHARS, max_size=60))
def test_fuzz_text_near_the_grammar(text: str) -> None:
    _parse_or_typed_error(text)


_FUNCTION_NAMES = st.sampled_from([*FUNCTIONS, "tnah", "foo", "__import__", "eval", "getattr"])
_LEAVES = st.one_of(
    st.sampled_from(["x", "pi", "e", "y", "None", "True", "'s'", "1j", "1e999", "x.real"]),
    st.integers(min_value=-(10**18), max_value=10**18).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        children, st.sampled_from(["+", "-", "*", "/", "**", "//", "%", "@", "<"]), children
    ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = st.tuples(st.sampled_from(["-", "+", "~", "not "]), children).map("".join)
    call = st.tuples(_FUNCTION_NAMES, st.lists(children, max_size=3)).map(
        lambda t: f"{t[0]}({', '.join(t[1])})"
    )
    return st.one_of(binary, unary, call)


@FUZZ
@given(st.recursive(_LEAVES, _extend, max_leaves=25))
def test_fuzz_random_trees_from_the_grammar(text: str) -> None:
    _parse_or_typed_error(text)


@FUZZ
@given(st.sampled_from(MALICIOUS), st.text(max_size=10), st.text(max_size=10))
def test_fuzz_malicious_strings_with_noise(template: str, before: str, after: str) -> None:
    flag = Path("/tmp/pwned")
    existed = flag.exists()
    _parse_or_typed_error(before + template.format(flag=flag) + after)
    assert flag.exists() == existed


_VALID_LEAVES = st.one_of(
    st.sampled_from(["x", "pi", "e", "x", "x"]),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.floats(min_value=0, max_value=1e6).map(repr),
)
_UNARY_NAMES = sorted(set(FUNCTIONS) - {"max", "min"})


def _extend_valid(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**"]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )
    unary = st.tuples(st.sampled_from(["-", "+"]), children).map("".join)
    call = st.tuples(st.sampled_from(_UNARY_NAMES), children).map(lambda t: f"{t[0]}({t[1]})")
    extremum = st.tuples(
        st.sampled_from(["max", "min"]), st.lists(children, min_size=2, max_size=3)
    )
    return st.one_of(binary, unary, call, extremum.map(lambda t: f"{t[0]}({', '.join(t[1])})"))


@FUZZ
@given(st.recursive(_VALID_LEAVES, _extend_valid, max_leaves=12))
def test_fuzz_well_formed_trees_parse_or_fail_on_values_only(text: str) -> None:
    try:
        result = parse_expression(text)
    except ExpressionError as exc:
        # grammatical input: only value checks (caps, non-finite constants, length) may refuse it
        reasons = (
            "larger than",
            "digits",
            "not a finite real",
            "characters long",
            "beyond float64",
            "levels deep",
        )
        assert any(reason in exc.message for reason in reasons), exc.message
        return
    assert result.free_symbols <= {X}
