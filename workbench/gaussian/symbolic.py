"""The Gaussian engine's symbolic answers, for derivations and reports.

``symbolic_expect(f, g, q11, q12, q22)`` is E[f(u) g(v)] as a sympy expression: the closed form
of the pair's family when one exists (the very formulas the numeric engine evaluates,
``closed_forms.pair_formula`` with sympy as the module: arc-cosine for relu/step, arcsine for
erf, ...), else the unevaluated Gaussian integral over standard normal z₁, z₂ with
u = √q11 z₁, v = (q12 z₁ + √(q11 q22 − q12²) z₂)/√q11. ``numeric_value`` evaluates such an
expression (its integrals by Gauss–Legendre quadrature on panels: numpy in float64 up to 14
digits when two orders agree, else mpmath), the independent route the tests compare the numeric
rules against.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from workbench.activations import Activation, X
from workbench.gaussian.closed_forms import match_family, pair_formula

Z1, Z2 = sp.symbols("z_1 z_2", real=True)


def number(value: Any) -> sp.Expr:
    """A spec number as sympy shows it: integers exactly; a float that is a simple fraction
    written to full precision (1/9 as 0.1111111111111111) as that fraction; other decimals
    as Floats of 15 digits (print them with ``full_prec=False`` to see the digits written)."""
    if isinstance(value, sp.Basic):
        return value
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return sp.Integer(int(value))
    text = repr(value)
    digits = len(re.sub(r"[^0-9]", "", text.split("e")[0]).lstrip("0"))
    if digits >= 15:
        fraction = Fraction(value).limit_denominator(10**6)
        if float(fraction) == value:
            return sp.Rational(fraction.numerator, fraction.denominator)
    return sp.Float(text, 15)


def density(*z: sp.Symbol) -> sp.Expr:
    """The standard normal density of ``z``."""
    return sp.exp(-sum(v**2 for v in z) / 2) / sp.sqrt(2 * sp.pi) ** len(z)


def symbolic_expect(f: Activation, g: Activation, q11: Any, q12: Any, q22: Any) -> sp.Expr:
    """E[f(u) g(v)] for (u, v) ~ N(0, [[q11, q12], [q12, q22]]): closed form or integral."""
    ff, gf = match_family(f.expr), match_family(g.expr)
    formula = pair_formula(ff, gf) if ff is not None and gf is not None else None
    if formula is not None and not (ff.shift or gf.shift):
        return formula(q11, q12, q22, sp)
    if q12 is q11 and q22 is q11:  # one variable: u = v
        return sp.Integral(
            (f.expr * g.expr).subs(X, sp.sqrt(q11) * Z1) * density(Z1), (Z1, -sp.oo, sp.oo)
        )
    u = sp.sqrt(q11) * Z1
    v = (q12 * Z1 + sp.sqrt(q11 * q22 - q12**2) * Z2) / sp.sqrt(q11)
    integrand = f.expr.subs(X, u) * g.expr.subs(X, v) * density(Z1, Z2)
    return sp.Integral(integrand, (Z1, -sp.oo, sp.oo), (Z2, -sp.oo, sp.oo))


def symbolic_expect1(h: Activation, q: Any) -> sp.Expr:
    """E[h(u)], u ~ N(0, q), as the integral ∫ h(√q z) Dz."""
    return sp.Integral(h.expr.subs(X, sp.sqrt(q) * Z1) * density(Z1), (Z1, -sp.oo, sp.oo))


# Gaussian integrals over z ∈ ℝ: the tails beyond |z| = 12 weigh below 1e-32; Gauss–Legendre
# on these panels resolves integrands analytic within ~1 of the real axis (tanh at q ~ 1).
PANELS = (-10, -6, -3, -1, 0, 1, 3, 6, 10)


FLOAT_DIGITS = 14  # up to these digits the integrals may be taken in float64
FLOAT_ORDERS = (32, 48)  # Gauss–Legendre nodes per panel, compared


def numeric_value(expr: sp.Expr, digits: int = FLOAT_DIGITS) -> mpmath.mpf:
    """The value of a closed expression (no free symbols) at about ``digits`` digits: every
    Gaussian Integral by Gauss–Legendre quadrature of its lambdified integrand on panels of
    the real line, the rest by sympy's evalf."""
    values = {integral: _integral_value(integral, digits) for integral in expr.atoms(sp.Integral)}
    with mpmath.workdps(digits + 5):
        value = expr.xreplace(values).evalf(digits + 5)
        return mpmath.mpf(sp.re(value)) if value.is_number else mpmath.mpf(value)


@functools.lru_cache(maxsize=256)
def _integral_value(integral: sp.Integral, digits: int) -> sp.Float:
    variables = [limits[0] for limits in integral.limits]
    if digits <= FLOAT_DIGITS:
        found = _float_integral(integral, variables, digits)
        if found is not None:
            return sp.Float(found, 17)
    fn = sp.lambdify(variables, integral.function, modules="mpmath")
    with mpmath.workdps(digits + 5):
        panels = [mpmath.mpf(p) for p in PANELS]
        total = mpmath.quad(fn, *([panels] * len(variables)), method="gauss-legendre")
        return sp.Float(total, digits + 5)


def _float_integral(integral: sp.Integral, variables: list, digits: int) -> float | None:
    """The integral by tensor Gauss–Legendre rules of two orders on PANELS in float64, when they
    agree to ``digits`` digits (a smooth integrand); None otherwise (kinks, or functions numpy
    cannot evaluate), and mpmath takes over."""
    try:
        fn = sp.lambdify(variables, integral.function, modules=["numpy", "scipy"])
    except Exception:  # noqa: BLE001 — a function numpy cannot take: mpmath's route
        return None
    values = []
    for order in FLOAT_ORDERS:
        x, w = np.polynomial.legendre.leggauss(order)
        nodes, weights = [], []
        for a, b in zip(PANELS[:-1], PANELS[1:]):
            nodes.append((b - a) / 2 * x + (a + b) / 2)
            weights.append((b - a) / 2 * w)
        z, wz = np.concatenate(nodes), np.concatenate(weights)
        grids = np.meshgrid(*[z] * len(variables), indexing="ij")
        weight = functools.reduce(np.multiply.outer, [wz] * len(variables))
        with np.errstate(all="ignore"):
            try:
                total = float(np.sum(weight * np.broadcast_to(fn(*grids), weight.shape)))
            except (TypeError, ValueError, NameError, AttributeError):
                return None
        if not np.isfinite(total):
            return None
        values.append(total)
    if abs(values[1] - values[0]) > 10.0**-digits * max(abs(values[1]), 1e-300):
        return None
    return values[1]
