"""Closed-form Gaussian expectations E[f(u) g(v)], (u, v) ~ N(0, [[q11, q12], [q12, q22]]).

Each activation is matched structurally (sympy Wild patterns, no evaluation of text) to one of
the families below; a pair of families with a known dual kernel is answered exactly:

* linear a·x:           E = a1 a2 q12
* relu a·max(0, b x):   arc-cosine kernel of degree 1 (Cho & Saul 2009; the relu NNGP of
                        xiao_bahri §2), E = a1 a2 √(q11 q22)/(2π) (sin θ + (π − θ) cos θ)
* step a·H(b x):        arc-cosine kernel of degree 0, E = a1 a2 (π − θ)/(2π)
* relu × step:          E = a1 a2 √q11 (1 + c)/(2 √(2π))
* erf a·erf(b x):       arcsine kernel (Williams 1997),
                        E = a1 a2 (2/π) asin(2 b1 b2 q12 / √((1 + 2 b1² q11)(1 + 2 b2² q22)))
* gauss a·exp(−b x²):   E = a1 a2 / √((1 + 2 b1 q11)(1 + 2 b2 q22) − 4 b1 b2 q12²)
* constant a:           E = a1 a2 (constant × constant)

with c = q12/√(q11 q22) and θ = arccos c. The formulas are evaluated with the precision
context's arithmetic, so the same code serves float64 and mpmath.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from workbench.activations import X


@dataclass(frozen=True)
class Family:
    """A matched closed-form family: ``form`` with amplitude ``a``, inner scale ``b`` and, for
    relu and step, a ``shift`` s: a·relu(x + s), a·H(x + s) (the kink sits at x = −s)."""

    form: str  # linear | relu | step | erf | gauss | const
    a: Any  # sympy number when matched; converted to the context's numbers when evaluated
    b: Any = 1
    shift: Any = 0


_A = sp.Wild("a", exclude=[X])
_B = sp.Wild("b", exclude=[X])
_C = sp.Wild("c", exclude=[X])

_PATTERNS: tuple[tuple[str, sp.Expr], ...] = (
    ("relu", _A * sp.Max(0, _B * X + _C)),
    ("step", _A * sp.Heaviside(_B * X + _C)),
    ("step", _A * sp.Heaviside(_B * X + _C, sp.Rational(1, 2))),
    ("erf", _A * sp.erf(_B * X)),
    ("gauss", _A * sp.exp(-_B * X**2)),
    ("linear", _A * X),
)


@lru_cache(maxsize=512)
def match_family(expr: sp.Expr) -> Family | None:
    """The closed-form family of ``expr`` (an activation in x), or None."""
    if not expr.has(X):
        return Family("const", expr) if expr.is_real else None
    for kind, pattern in _PATTERNS:
        m = expr.match(pattern)
        if not m or _A not in m:
            continue
        a, b, c = m[_A], m.get(_B, sp.Integer(1)), m.get(_C, sp.Integer(0))
        if not all(v.is_number and v.is_real for v in (a, b, c)):
            continue
        if kind == "relu" and b > 0:
            return Family("relu", a * b, 1, c / b)
        if kind == "step" and b > 0:
            return Family("step", a, 1, c / b)
        if kind in ("erf", "gauss") and b > 0 or kind == "erf" and b != 0:
            return Family(kind, a, b)
        if kind == "linear":
            return Family("linear", a * b)
    if expr == X:
        return Family("linear", sp.Integer(1))
    return None


def _math(ctx: Any) -> Any:
    return ctx.lib


def pair_formula(f: Family, g: Family) -> Callable[..., Any] | None:
    """E[f(u) g(v)] as a function of (q11, q12, q22, m) for module ``m``: numpy, mpmath, or
    sympy (the same formula as an expression, for derivations)."""
    kinds = (f.form, g.form)

    def corr(q11, q12, q22, m):
        return _clip(q12 / m.sqrt(q11 * q22), m)

    if kinds == ("linear", "linear"):
        return lambda q11, q12, q22, m: f.a * g.a * q12
    if kinds == ("const", "const"):
        return lambda q11, q12, q22, m: f.a * g.a + 0 * q12
    if set(kinds) <= {"relu", "step"} and (f.shift != 0 or g.shift != 0):
        return _shifted_pair(f, g)
    if kinds == ("relu", "relu"):

        def relu_relu(q11, q12, q22, m):
            c = corr(q11, q12, q22, m)
            th = np.arccos(c) if m is np else m.acos(c)
            return f.a * g.a * m.sqrt(q11 * q22) / (2 * m.pi) * (m.sin(th) + (m.pi - th) * c)

        return relu_relu
    if kinds == ("step", "step"):

        def step_step(q11, q12, q22, m):
            c = corr(q11, q12, q22, m)
            th = np.arccos(c) if m is np else m.acos(c)
            return f.a * g.a * (m.pi - th) / (2 * m.pi)

        return step_step
    if kinds in (("relu", "step"), ("step", "relu")):

        def relu_step(q11, q12, q22, m):
            c = corr(q11, q12, q22, m)
            qr = q11 if f.form == "relu" else q22
            return f.a * g.a * m.sqrt(qr) * (1 + c) / (2 * m.sqrt(2 * m.pi))

        return relu_step
    if kinds == ("erf", "erf"):

        def erf_erf(q11, q12, q22, m):
            den = m.sqrt((1 + 2 * f.b**2 * q11) * (1 + 2 * g.b**2 * q22))
            arg = 2 * f.b * g.b * q12 / den
            return f.a * g.a * 2 / m.pi * (np.arcsin(arg) if m is np else m.asin(arg))

        return erf_erf
    if kinds == ("gauss", "gauss"):

        def gauss_gauss(q11, q12, q22, m):
            # det = (1 + 2b_f q11)(1 + 2b_g q22) − 4 b_f b_g q12², expanded so that the
            # q11 q22 − q12² ≥ 0 part is formed once (the product difference lost every
            # digit at q ~ 1e160 and gave det = 0 for an input with itself)
            minor = q11 * q22 - q12**2
            if m is np:
                minor = np.maximum(minor, 0.0)
            elif m is not sp:  # mpmath; symbolic forms keep the expression
                minor = max(minor, 0)
            det = 1 + 2 * f.b * q11 + 2 * g.b * q22 + 4 * f.b * g.b * minor
            return f.a * g.a / m.sqrt(det)

        return gauss_gauss
    return None


def _shifted_pair(f: Family, g: Family) -> Callable[..., Any]:
    """E[f(u) g(v)] for f, g ∈ {a·relu(x + s), a·H(x + s)} with shifts (a batch norm's β):
    truncated moments of the bivariate normal (Rosenbaum 1961). With σ's the standard
    deviations, ρ the correlation, h = s_f/σ₁, k = s_g/σ₂, r = √(1 − ρ²), P = Φ₂(h, k; ρ)
    (by Owen's T), A = φ(h) Φ((k − ρh)/r), B = φ(k) Φ((h − ρk)/r):
    E[relu·relu] = σ₁σ₂ [(ρ + hk) P + kA + hB + r e^{−(h² − 2ρhk + k²)/(2r²)}/(2π)],
    E[relu(u)·H(v)] = σ₁ (A + ρB + hP), E[H·H] = P; at |ρ| = 1 the one-dimensional limits."""
    swap = f.form == "step" and g.form == "relu"
    first, second = (g, f) if swap else (f, g)

    def evaluate(q11, q12, q22, m):
        if swap:
            q11, q22 = q22, q11
        s1, s2 = m.sqrt(q11), m.sqrt(q22)
        rho = _clip(q12 / m.sqrt(q11 * q22), m)
        h, k = first.shift / s1, second.shift / s2
        value = _bivariate_moment(first.form, second.form, h, k, rho, m)
        scale = (s1 if first.form == "relu" else 1) * (s2 if second.form == "relu" else 1)
        return first.a * second.a * scale * value

    return evaluate


def _clip(c: Any, m: Any) -> Any:
    if m is sp:  # symbolic: |c| ≤ 1 holds by construction
        return c
    return m.fmin(m.fmax(c, -1), 1) if m is np else max(min(c, 1), -1)


# Below this √(1 − ρ²), i.e. 1 − |ρ| within ~1e-15 (a few roundings of ρ), the pair is taken
# as perfectly (anti)correlated: near |ρ| = 1, P = Φ₂ changes by ~1/r per unit of ρ, so one
# rounding of ρ moves it by ~1e-9 anyway, and exactly degenerate pairs (a kernel's diagonal)
# then get the exact one-dimensional answer.
DEGENERATE_R = 5e-8


def _bivariate_moment(kind1: str, kind2: str, h: Any, k: Any, rho: Any, m: Any) -> Any:
    """E[(x + h)^i (y + k)^j 1{x > −h, y > −k}] for standard (x, y) with correlation ρ,
    i = 1 for relu (0 for step), j likewise."""
    if m is np:
        h, k, rho = np.broadcast_arrays(*(np.asarray(v, float) for v in (h, k, rho)))
        r = np.sqrt(np.maximum(1.0 - rho * rho, 0.0))
        with np.errstate(all="ignore"):
            general = _moment_general(kind1, kind2, h, k, rho, r, np)
            edge = _moment_degenerate(kind1, kind2, h, k, np.sign(rho), np)
        return np.where(r < DEGENERATE_R, edge, general)
    r = m.sqrt(max(1 - rho * rho, 0))
    if r < DEGENERATE_R:
        return _moment_degenerate(kind1, kind2, h, k, 1 if rho > 0 else -1, m)
    return _moment_general(kind1, kind2, h, k, rho, r, m)


def _moment_general(kind1, kind2, h, k, rho, r, m):
    cdf, pdf, owens = _normal(m)
    p = 0.5 * (cdf(h) + cdf(k))
    p = p - owens(h, _ratio(k - rho * h, h * r, m)) - owens(k, _ratio(h - rho * k, k * r, m))
    if m is np:
        p = p - 0.5 * ((h * k < 0) | ((h * k == 0) & (h + k < 0)))
    elif h * k < 0 or h * k == 0 and h + k < 0:
        p -= 0.5
    if kind1 == kind2 == "step":
        return p
    a = pdf(h) * cdf((k - rho * h) / r)
    b = pdf(k) * cdf((h - rho * k) / r)
    if kind1 == "relu" and kind2 == "step":
        return a + rho * b + h * p
    tail = r * m.exp(-(h * h - 2 * rho * h * k + k * k) / (2 * r * r)) / (2 * m.pi)
    return (rho + h * k) * p + k * a + h * b + tail


def _moment_degenerate(kind1, kind2, h, k, sign, m):
    """ρ = ±1: y = ±x, so a one-dimensional truncated moment over x ∈ (lo, hi)."""
    cdf, pdf, _ = _normal(m)
    if m is np:
        lo = np.where(sign > 0, np.maximum(-h, -k), -h)
        hi = np.where(sign > 0, np.inf, np.maximum(k, -h))
        finite_hi = np.where(np.isinf(hi), 0.0, hi)
        hi_pdf = np.where(np.isinf(hi), 0.0, finite_hi * pdf(finite_hi))  # x φ(x) → 0
    else:
        lo, hi = (max(-h, -k), m.inf) if sign > 0 else (-h, max(k, -h))
        hi_pdf = 0 if m.isinf(hi) else hi * pdf(hi)
    mass = cdf(hi) - cdf(lo)  # ∫ x^n φ(x) dx over (lo, hi) for n = 0, 1, 2
    first = pdf(lo) - pdf(hi)
    second = mass + lo * pdf(lo) - hi_pdf
    if kind1 == kind2 == "step":
        return mass
    if kind1 == "relu" and kind2 == "step":
        return first + h * mass
    # (x + h)(±x + k) = ±x² + (k ± h) x + h k
    return sign * second + (k + sign * h) * first + h * k * mass


def _ratio(num: Any, den: Any, m: Any) -> Any:
    """num/den, ±∞ for den = 0 (Owen's T takes infinite arguments)."""
    if m is np:
        return num / den
    return num / den if den != 0 else m.inf * (1 if num >= 0 else -1)


def _normal(m: Any):
    """Φ, φ and Owen's T in numpy (scipy) or mpmath."""
    if m is np:
        from scipy.special import ndtr, owens_t

        return ndtr, lambda x: np.exp(-x * x / 2) / np.sqrt(2 * np.pi), owens_t
    return mpmath.ncdf, mpmath.npdf, _owens_t_mpmath


def _owens_t_mpmath(h: Any, a: Any) -> Any:
    """T(h, a) = (1/2π) ∫₀^a exp(−h²(1 + x²)/2)/(1 + x²) dx."""
    if mpmath.isinf(a):
        return mpmath.sign(a) * mpmath.ncdf(-abs(h)) / 2
    return mpmath.quad(lambda x: mpmath.exp(-h * h * (1 + x * x) / 2) / (1 + x * x), [0, a]) / (
        2 * mpmath.pi
    )


def closed_form(f_expr: sp.Expr, g_expr: sp.Expr, ctx: Any) -> Callable[..., Any] | None:
    """A callable (q11, q12, q22) -> E[f(u) g(v)] in ``ctx``'s arithmetic, or None."""
    ff, gf = match_family(f_expr), match_family(g_expr)
    if ff is None or gf is None:
        return None
    if pair_formula(ff, gf) is None:
        return None
    if _math(ctx) is mpmath:

        def evaluate(q11, q12, q22):
            with ctx.active():
                numbers = _numeric(ff, mpmath.mpf), _numeric(gf, mpmath.mpf)
                return pair_formula(*numbers)(
                    mpmath.mpf(q11), mpmath.mpf(q12), mpmath.mpf(q22), mpmath
                )

        return evaluate
    return _float64_closed_form(ff, gf)


@lru_cache(maxsize=512)
def _float64_closed_form(ff: Family, gf: Family) -> Callable[..., Any]:
    """The float64 formula with the families' parameters converted once."""
    numeric = pair_formula(_numeric(ff, float), _numeric(gf, float))
    return lambda q11, q12, q22: numeric(
        np.asarray(q11, float), np.asarray(q12, float), np.asarray(q22, float), np
    )


def _numeric(family: Family, convert: Callable[[Any], Any]) -> Family:
    """``family`` with its parameters as numbers of the current precision."""
    digits = mpmath.mp.dps if convert is mpmath.mpf else 17
    return Family(
        family.form,
        *(convert(str(sp.N(v, digits))) for v in (family.a, family.b, family.shift)),
    )


def unchanged(q: np.ndarray) -> np.ndarray:
    """The ``prepare`` of duals that take the variances as they are (callers may skip it)."""
    return q


@dataclass(frozen=True)
class JointDual:
    """E[φ(u) φ(v)] and E[φ′(u) φ′(v)] together, for the NNGP and NTK rules of a layer
    (xiao_bahri eq. 6), in the form a kernel recursion evaluates fastest: with
    g = ``prepare(q)`` per variance, ``pair(g1·g2, q12, out)`` returns both kernels divided
    by ``scale``. ``out`` holds four arrays to compute in (the first two receive the
    results) or four None (fresh arrays: the form torch.compile traces); numpy ufuncs only."""

    prepare: Callable[[np.ndarray], np.ndarray]
    pair: Callable[[np.ndarray, np.ndarray, Any], tuple[np.ndarray, np.ndarray]]
    scale: float
    # (g1·g2, q12, G) ↦ both kernels and the new gap √(T_aa T_bb) − T_ab, all / scale, from
    # the gap G = √(q1 q2) − q12 (relu: the angle needs it near c = 1); None: see gap.py
    pair_from_gap: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None


# θ − sin θ = θ³ Σ_k c_k θ^{2k}, c_k = (−1)^k/(2k + 3)!
_THETA_MINUS_SIN = tuple((-1) ** k / math.factorial(2 * k + 3) for k in range(7))
SERIES_BELOW = 0.3  # θ below this: θ − sin θ by its series


def _theta_minus_sin(
    theta: np.ndarray, r: np.ndarray, root: np.ndarray, functional: bool
) -> np.ndarray:
    """√gg (θ − sin θ) for sin θ = r/√gg (``root`` = √gg), written into ``root`` (unless
    ``functional``): by the series θ³ Σ_k c_k θ^{2k} for θ < SERIES_BELOW (eagerly with the
    fewest terms whose first omitted one is below 1e-17 of the sum at the largest such θ),
    else as θ √gg − r."""
    if functional:  # branchless (torch.compile traces no data-dependent branch)
        small = np.minimum(theta, SERIES_BELOW)
        series = _series(small, root * small, inplace=False)
        return np.where(theta < SERIES_BELOW, series, theta * root - r)
    if not theta.size:
        return root
    largest = float(np.max(theta))
    if not largest < SERIES_BELOW:  # NaN included
        direct = np.multiply(theta, root, out=None if np.min(theta) < SERIES_BELOW else root)
        direct = np.subtract(direct, r, out=direct)
        if float(np.min(theta)) >= SERIES_BELOW:
            return direct
        small = np.minimum(theta, SERIES_BELOW)
        series = _series(small, root * small)
        return np.where(theta < SERIES_BELOW, series, direct)
    return _series(theta, np.multiply(root, theta, out=root), largest)


def _series(
    theta: np.ndarray, scaled: np.ndarray, largest: float = SERIES_BELOW, inplace: bool = True
) -> np.ndarray:
    """``scaled`` · θ² Σ_k c_k θ^{2k} (``scaled`` = √gg θ), written into ``scaled`` if
    ``inplace``."""
    terms = len(_THETA_MINUS_SIN)
    for k in range(1, terms):
        if abs(_THETA_MINUS_SIN[k]) * largest ** (2 * k) < 1e-17 * _THETA_MINUS_SIN[0]:
            terms = k
            break
    t2 = theta * theta
    series = np.full_like(t2, _THETA_MINUS_SIN[terms - 1])
    into = series if inplace else None  # (torch.compile traces fresh arrays only)
    for coefficient in _THETA_MINUS_SIN[: terms - 1][::-1]:
        series = np.multiply(series, t2, out=into)
        series = np.add(series, coefficient, out=into)
    series = np.multiply(series, t2, out=into)
    return np.multiply(scaled, series, out=scaled if inplace else None)


@lru_cache(maxsize=512)
def joint_dual(phi_expr: sp.Expr) -> JointDual | None:
    """The joint dual kernels of φ of the relu, erf or linear family (None for others)."""
    family = match_family(phi_expr)
    if family is None or family.form not in ("relu", "erf", "linear") or family.shift != 0:
        return None
    num = _numeric(family, float)
    a2, b2 = num.a * num.a, num.b * num.b
    if family.form == "linear":

        def linear_pair(gg, q12, out):
            ones = np.multiply(q12, 0.0, out=out[1])
            return np.multiply(q12, 1.0, out=out[0]), np.add(ones, 1.0, out=out[1])

        return JointDual(unchanged, linear_pair, a2)
    if family.form == "relu":  # φ' = a·H(x): the degree-0 arc-cosine kernel

        def relu_pair(gg, q12, out):
            # gg = q1 q2; with K = √gg cos θ and r = √(gg − K²) = √gg sin θ:
            # E[φφ] = a² (r + (π − θ) K)/(2π), E[φ'φ'] = a² (π − θ)/(2π), π − θ = atan2(r, −K)
            t = np.multiply(q12, q12, out=out[0])
            r = np.subtract(gg, t, out=out[2])
            r = np.abs(r, out=out[2])  # −0 from rounding when c = ±1
            r = np.sqrt(r, out=out[2])
            t = np.negative(q12, out=out[0])
            t_dot = np.arctan2(r, t, out=out[1])
            t = np.multiply(t_dot, q12, out=out[0])
            return np.add(t, r, out=out[0]), t_dot

        def relu_pair_from_gap(gg, q12, gap, out=(None,) * 6):
            # r = √gg sin θ = √(G (2√gg − G)): no cancellation where c → 1. The new gap over
            # the scale a²/2π is √gg (π − J(θ)) = (π − θ) G + √gg (θ − sin θ), two
            # non-negative terms; θ − sin θ as θ − r/√gg for θ ≥ 0.3 (error ≤ 1.3e-15 of the
            # new gap), below by as many terms of its series as reach 1e-17 of it (7 at 0.3)
            t_out, t_dot_out, gap_out, root, r, theta = out
            root = np.sqrt(gg, out=root)
            r = np.multiply(root, 2.0, out=r)
            r = np.subtract(r, gap, out=r)
            r = np.multiply(r, gap, out=r)
            r = np.maximum(r, 0.0, out=r)
            r = np.sqrt(r, out=r)
            t_dot = np.negative(q12, out=t_dot_out)
            t_dot = np.arctan2(r, t_dot, out=t_dot)
            theta = np.subtract(np.pi, t_dot, out=theta)
            excess = _theta_minus_sin(theta, r, root, functional=t_out is None)
            t = np.multiply(t_dot, q12, out=t_out)
            t = np.add(t, r, out=t)
            new_gap = np.multiply(t_dot, gap, out=gap_out)
            return t, t_dot, np.add(new_gap, excess, out=new_gap)

        return JointDual(unchanged, relu_pair, a2 / (2 * np.pi), relu_pair_from_gap)

    def erf_pair(rr, q12, out):  # φ = a·erf(b x), φ' = a b (2/√π) exp(−b² x²)
        # rr = 2b²/√((1 + 2b² q1)(1 + 2b² q2)), the product of the two prepared variances:
        # E[φφ] = (2a²/π) asin(q12 rr), E[φ'φ'] = (2a²/π) rr/√(1 − (q12 rr)²)
        arg = np.multiply(q12, rr, out=out[3])
        t = np.arcsin(arg, out=out[0])
        t_dot = np.multiply(arg, arg, out=out[1])
        t_dot = np.subtract(1.0, t_dot, out=out[1])
        t_dot = np.sqrt(t_dot, out=out[1])
        return t, np.divide(rr, t_dot, out=out[1])

    root_2b2 = float(np.sqrt(2 * b2))
    return JointDual(lambda q: root_2b2 / np.sqrt(1.0 + 2 * b2 * q), erf_pair, 2 * a2 / np.pi)
