"""The activation library: names, derivatives, numpy/mpmath evaluation, kinks, symmetries."""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp

from workbench.activations import NAMED, Activation, X, parse_activation
from workbench.errors import ExpressionError

RNG_SEED = 20240611


def named(name: str) -> Activation:
    return parse_activation(name)


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(b) + 1e-300


# --- names and parsing ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_activations_are_case_insensitive_and_canonical(name: str) -> None:
    for spelling in (name, name.upper(), f"  {name.title()} "):
        activation = parse_activation(spelling)
        assert activation.name == name
        assert activation.expr == NAMED[name]


def test_named_expressions() -> None:
    assert named("relu").expr == sp.Max(0, X)
    assert named("linear").expr == X
    assert named("arctan").expr == sp.atan(X)
    assert sp.simplify(named("gelu").expr - X / 2 * (1 + sp.erf(X / sp.sqrt(2)))) == 0
    assert named("swish").name == "swish" and named("silu").name == "silu"
    assert named("swish") == named("silu")  # equal by expression


def test_custom_expressions() -> None:
    custom = parse_activation({"expr": "  x*tanh(x) "})
    assert custom.name == "x*tanh(x)"
    assert custom.expr == X * sp.tanh(X)
    assert parse_activation("2*x").expr == 2 * X
    assert parse_activation({"expr": "0*x + 1/2"}).expr == sp.S.Half  # constants via dict
    assert parse_activation(custom) is custom


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("tnah", ["'tnah'", "did you mean `tanh`"]),
        ("rleu", ["did you mean `relu`"]),
        ("softmax", ["unknown activation 'softmax'", "known names"]),
        ("exp", ["exp(x)"]),
        ("0.5", ["does not depend on x"]),
        ("tanh(y)", ["`y`"]),
        ("x*tnah(x)", ["did you mean `tanh`"]),
        ({"exp": "x"}, ["'exp'"]),
        ({"expr": "x", "name": "mine"}, ["'name'"]),
        ({}, ["missing", "expr"]),
        ({"expr": 3}, ["string"]),
        (3, ["int"]),
        (None, ["NoneType"]),
    ],
)
def test_parse_activation_errors(value: object, fragments: list[str]) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_activation(value)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)


def test_hashable_and_compared_by_expression() -> None:
    a, b = Activation("a", X**2), Activation("b", X**2)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, named("tanh"), parse_activation("tanh(x)")}) == 2
    assert named("tanh") != named("erf")
    assert Activation("two", 2).expr == sp.Integer(2)
    with pytest.raises(AttributeError):
        a.name = "c"  # type: ignore[misc]


# --- derivatives and composition --------------------------------------------------------------


def test_tanh_derivative_is_one_minus_tanh_squared() -> None:
    d = named("tanh").derivative()
    assert d.name == "tanh'"
    assert sp.simplify(d.expr - (1 - sp.tanh(X) ** 2)) == 0
    assert named("tanh").derivative(2).name == "tanh''"
    assert named("tanh").derivative(0) == named("tanh")
    with pytest.raises(ValueError):
        named("tanh").derivative(-1)


def test_relu_derivative_is_the_step() -> None:
    d = named("relu").derivative()
    assert d.expr == sp.Heaviside(X)
    xs = np.linspace(-3, 3, 61)
    np.testing.assert_array_equal(d.numpy(xs), np.heaviside(xs, 0.5))
    assert [d.mpmath(v) for v in (-1, 0, 1)] == [0, mpmath.mpf(0.5), 1]
    second = named("relu").derivative(2)  # DiracDelta: 0 almost everywhere
    assert second.expr.has(sp.DiracDelta)
    np.testing.assert_array_equal(second.numpy(xs), np.zeros_like(xs))
    assert second.mpmath(mpmath.mpf(0)) == 0


def test_gelu_derivative_matches_finite_differences() -> None:
    gelu = named("gelu")
    d = gelu.derivative()
    xs = np.random.default_rng(RNG_SEED).uniform(-6, 6, 60)
    h = 1e-5
    fd = (gelu.numpy(xs + h) - gelu.numpy(xs - h)) / (2 * h)
    np.testing.assert_allclose(d.numpy(xs), fd, rtol=1e-8, atol=1e-9)
    with mpmath.workdps(30):
        for v in xs:
            exact = d.mpmath(mpmath.mpf(v))
            assert abs(exact - mpmath.diff(gelu.mpmath, mpmath.mpf(v))) < mpmath.mpf(10) ** -25
            assert _close(float(d.numpy(v)), float(exact), 1e-12)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_derivatives_numpy_match_mpmath(name: str) -> None:
    d = named(name).derivative()
    xs = np.random.default_rng(RNG_SEED).uniform(-8, 8, 50)
    with mpmath.workdps(30):
        exact = [float(d.mpmath(mpmath.mpf(v))) for v in xs]
    got = d.numpy(xs)
    assert all(_close(g, e, 1e-12) for g, e in zip(got, exact, strict=True))


def test_compose() -> None:
    outer, inner = named("tanh"), named("relu")
    composed = outer.compose(inner)
    assert composed.name == "tanh∘relu"
    assert composed.expr == sp.tanh(sp.Max(0, X))
    xs = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(composed.numpy(xs), np.tanh(np.maximum(xs, 0)))
    assert composed.derivative().name == "(tanh∘relu)'"
    assert named("linear").compose(outer) == outer


# --- numerical evaluation ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED))
def test_numpy_matches_mpmath_at_random_points(name: str) -> None:
    activation = named(name)
    xs = np.random.default_rng(RNG_SEED).uniform(-8, 8, 200)
    got = activation.numpy(xs)
    assert got.dtype == np.float64 and got.shape == xs.shape
    with mpmath.workdps(30):
        exact = [float(activation.mpmath(mpmath.mpf(v))) for v in xs]
    bad = [(v, g, e) for v, g, e in zip(xs, got, exact, strict=True) if not _close(g, e, 1e-13)]
    assert not bad


@pytest.mark.parametrize("name", sorted(NAMED))
def test_no_overflow_warnings_and_finite_values_up_to_1e3(name: str) -> None:
    xs = np.array([-1000.0, -700.0, -50.0, 0.0, 50.0, 700.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for activation in (named(name), named(name).derivative(), named(name).derivative(2)):
            values = activation.numpy(xs)
            assert np.all(np.isfinite(values)), (activation.name, values)


def test_large_arguments_have_the_right_limits() -> None:
    big = np.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(named("sigmoid").numpy(big), [0.0, 1.0])
    np.testing.assert_array_equal(named("tanh").numpy(big), [-1.0, 1.0])
    np.testing.assert_allclose(named("softplus").numpy(big), [0.0, 1000.0])
    np.testing.assert_allclose(named("swish").numpy(big), [0.0, 1000.0])
    np.testing.assert_allclose(named("gelu").numpy(big), [0.0, 1000.0])
    np.testing.assert_allclose(named("sigmoid").derivative().numpy(big), [0.0, 0.0])


def test_numpy_accepts_scalars_and_broadcasts_constants() -> None:
    assert named("tanh").numpy(0.5) == pytest.approx(np.tanh(0.5))
    assert named("tanh").numpy(0.5).shape == ()
    zero = named("linear").derivative(2)
    out = zero.numpy(np.ones((2, 3)))
    assert out.shape == (2, 3) and out.dtype == np.float64 and not out.any()
    assert named("relu").numpy is named("relu").numpy  # cached per expression


def test_mpmath_is_exact_at_the_working_precision() -> None:
    with mpmath.workdps(50):
        value = named("gelu").mpmath(mpmath.mpf(1))
        exact = mpmath.mpf(1) / 2 * (1 + mpmath.erf(1 / mpmath.sqrt(2)))
        assert abs(value - exact) < mpmath.mpf(10) ** -48
        leaky = parse_activation("max(x, 0.1*x)")
        assert abs(leaky.mpmath(mpmath.mpf(-3)) + mpmath.mpf(3) / 10) < mpmath.mpf(10) ** -48
    heaviside = parse_activation("heaviside(x)")
    assert [heaviside.mpmath(v) for v in (-2, 0, 2)] == [0, mpmath.mpf(0.5), 1]


# --- kinks, symmetry, homogeneity -------------------------------------------------------------

KINKS = {
    "linear": (),
    "relu": (0.0,),
    "tanh": (),
    "erf": (),
    "sigmoid": (),
    "arctan": (),
    "softsign": (0.0,),
    "gelu": (),
    "swish": (),
    "silu": (),
    "abs": (0.0,),
    "softplus": (),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_kinks_of_named_activations(name: str) -> None:
    assert named(name).kinks == KINKS[name]


@pytest.mark.parametrize(
    ("text", "kinks"),
    [
        ("max(x, 0.1*x)", (0.0,)),
        ("relu(x - 1)", (1.0,)),
        ("heaviside(x + 2) + sign(x)", (-2.0, 0.0)),
        ("min(x, 1, -x)", (0.0,)),
        ("max(0, x, x - 5)", (0.0,)),  # x - 5 never attains the max where it ties with 0
        ("relu(tanh(x) - 0.5)", (float(np.arctanh(0.5)),)),
        ("abs(x*exp(x) - 1)", (0.5671432904097838,)),
    ],
)
def test_kinks_of_custom_activations(text: str, kinks: tuple[float, ...]) -> None:
    got = parse_activation(text).kinks
    assert len(got) == len(kinks)
    assert all(isinstance(k, float) for k in got)
    np.testing.assert_allclose(got, kinks, atol=1e-12)


def test_kinks_of_derivatives_and_compositions() -> None:
    assert named("relu").derivative().kinks == (0.0,)
    assert named("tanh").compose(named("relu")).kinks == (0.0,)
    assert named("relu").compose(named("tanh")).kinks == (0.0,)


@pytest.mark.parametrize(
    ("name", "odd"),
    [("tanh", True), ("erf", True), ("linear", True), ("arctan", True), ("softsign", True),
     ("relu", False), ("sigmoid", False), ("gelu", False), ("abs", False), ("swish", False)],
)  # fmt: skip
def test_odd_parity(name: str, odd: bool) -> None:
    assert (named(name).parity == -1) is odd


def test_parity_of_custom_expressions() -> None:
    assert parse_activation("sigmoid(x) - 1/2").parity == -1  # needs more than expansion
    assert parse_activation("x*abs(x)").parity == -1
    assert parse_activation("x + 0.001").parity == 0
    assert parse_activation("cos(x) + x**2").parity == 1


@pytest.mark.parametrize(
    ("text", "degree"),
    [
        ("relu", 1.0),
        ("linear", 1.0),
        ("abs", 1.0),
        ("tanh", None),
        ("sigmoid", None),
        ("gelu", None),
        ("heaviside(x)", 0.0),
        ("step(-x)", 0.0),
        ("sign(x)", 0.0),
        ("max(x, 0.1*x)", 1.0),
        ("3*relu(x) - 2*relu(-x)", 1.0),
        ("x**2", 2.0),
        ("abs(x)**1.5", 1.5),
        ("relu(x)**3", 3.0),
        ("relu(x - 1)", None),
        ("x + 1", None),
        ("1/x", -1.0),
        ("x*tanh(x)", None),
    ],
)
def test_positive_homogeneity(text: str, degree: float | None) -> None:
    assert parse_activation(text).positive_homogeneity() == degree


def test_homogeneity_of_derivatives() -> None:
    assert named("relu").derivative().positive_homogeneity() == 0.0
    assert named("linear").derivative().positive_homogeneity() == 0.0


def test_latex() -> None:
    assert named("tanh").latex == r"\tanh{\left(x \right)}"
    assert "erf" in named("gelu").latex


def test_kinks_of_piecewise_and_delta_expressions() -> None:
    hat = Activation("hat", sp.Piecewise((0, X < -1), (1 - sp.Abs(X), X <= 1), (0, True)))
    assert hat.kinks == (-1.0, 0.0, 1.0)
    np.testing.assert_allclose(
        hat.numpy(np.array([-2.0, -0.5, 0.0, 0.5, 2.0])), [0, 0.5, 1, 0.5, 0]
    )
    assert Activation("delta", sp.DiracDelta(X - 2)).kinks == (2.0,)
    assert type(parse_activation("abs(x*exp(x) - 1)").kinks[0]) is float


@pytest.mark.parametrize("name", ["sigmoid", "swish"])
@pytest.mark.parametrize("q", [1e4, 1e6])
def test_logistic_derivatives_stay_finite_at_large_variance(name, q):
    """E[φ′(u)²] at q ≫ 1: the exponential form of sigmoid′ and swish′ is inf/inf = nan past
    |x| ≈ 709 (issue 15: a false "not finite" from q ≈ 1e4); the tanh form agrees with an
    independent quadrature of scipy's expit to 1e-8."""
    from scipy.integrate import quad
    from scipy.special import expit

    from workbench.activations import parse_activation
    from workbench.gaussian import expect

    def slope(x):
        s = expit(x)
        return s * (1 - s) if name == "sigmoid" else s + x * s * (1 - s)

    d = parse_activation(name).derivative()
    density = lambda x: np.exp(-x * x / (2 * q)) / np.sqrt(2 * np.pi * q)  # noqa: E731
    reach = 60.0 if name == "sigmoid" else 10 * np.sqrt(q)
    exact = quad(lambda x: slope(x) ** 2 * density(x), -reach, reach, points=[0.0],
                 limit=500, epsabs=0, epsrel=1e-11)[0]  # fmt: skip
    assert abs(expect(d, d, q, q, q) / exact - 1) < 1e-8


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("step(sqrt(x) - 1)", "the power 1/2 of x"),
        ("step(x - sqrt(min(x, erfc(x))))", "Min(x, erfc(x)) < 0"),
        ("log(x)", "log of x"),
        ("x**0.5", "the power 1/2 of x"),
        ("x**x", "the power x of x"),
        ("(x**2 - 1)**(1/3)", "(at x = 0)"),
    ],
)
def test_activations_not_real_on_the_whole_line_are_refused(text: str, fragment: str) -> None:
    """issue 15: `step(sqrt(x) - 1)` passed `check`, then `analyze` raised a TypeError on an
    mpc; now the parser names the subexpression that leaves the reals and a point where it
    does, for names and {expr: ...} alike."""
    for value in (text, {"expr": text}):
        with pytest.raises(ExpressionError, match="not real on the whole line") as err:
            parse_activation(value)
        assert fragment in err.value.message


@pytest.mark.parametrize(
    "text", ["sqrt(abs(x))", "sqrt(relu(x))", "log(1 + x**2)", "log(x**2)", "2**x",
             "softplus(x)", "x * sqrt(2)", "sqrt(x**2 + 1)"],
)  # fmt: skip
def test_activations_real_everywhere_are_accepted(text: str) -> None:
    assert parse_activation(text).expr.has(X)


@pytest.mark.parametrize("text", ["10**400", "tanh(10**400)", "x + 10**400",
                                  "exp(max(exp(x), 10**400))"])  # fmt: skip
def test_constants_beyond_float64_are_refused_when_parsed(text: str) -> None:
    """Found by the fuzz harness: 10**400 parsed exactly, then every numeric route raised an
    OverflowError or a TypeError from numpy."""
    with pytest.raises(ExpressionError, match="beyond float64's range"):
        parse_activation({"expr": text})
