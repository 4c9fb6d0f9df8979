"""The Gaussian-expectation engine: the only place in the package that integrates.

``expect(f, g, q11, q12, q22, ctx)`` = E[f(u) g(v)] with (u, v) ~ N(0, [[q11, q12], [q12, q22]])
and ``expect1(h, q, ctx)`` = E[h(u)], u ~ N(0, q). Answers come from a closed form when the pair
of activations has one (closed_forms.py), else from quadrature (quadrature.py) in the context's
precision (two-point ones at high precision by Mehler's series, hermite.py, where it
converges). ``symbolic.symbolic_expect`` gives the same expectation as a sympy expression (the
closed form, else the unevaluated integral) for derivations and reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.activations import Activation
from workbench.errors import TheoryError
from workbench.gaussian.asymptote import asymptote, far, split_expect
from workbench.gaussian.batch import expect_normalized_outer  # noqa: F401 - re-exported
from workbench.gaussian.closed_forms import closed_form
from workbench.gaussian.quadrature import (
    DEGENERATE_CORRELATION,
    expect1_float64,
    expect2_float64,
)
from workbench.precision import F64, Context


def _finite(value: Any, what: str, ctx: Context) -> Any:
    if not ctx.isfinite(value):
        raise TheoryError(
            f"the Gaussian expectation {what} is not finite (got {value})",
            hint="the activation grows too fast for this variance; lower sigma_w2 or q",
        )
    return value


def expect1(h: Activation, q: Any, ctx: Context = F64) -> Any:
    """E[h(u)], u ~ N(0, q); in float64 q may be an array (one vectorised rule)."""
    if isinstance(q, np.ndarray):
        ctx.require_float64("array variances")
        if (q < 0).any():
            raise TheoryError("array variances must be non-negative")
        values = expect1_float64(h.numpy, q, h.kinks, h.singularity_distance)
        if not np.isfinite(values).all():
            raise TheoryError(f"the Gaussian expectation E[{h.name}(u)] is not finite")
        return values
    if q < 0:
        raise TheoryError(f"a variance must be non-negative, got q = {q}")
    with ctx.active():
        value = ctx.quad1(ctx.function(h), q, h.kinks, h.parity == 1, h.singularity_distance)
    return _finite(value, f"E[{h.name}(u)]", ctx)


def expect(f: Activation, g: Activation, q11: Any, q12: Any, q22: Any, ctx: Context = F64) -> Any:
    """E[f(u) g(v)], (u, v) ~ N(0, [[q11, q12], [q12, q22]]). In float64 the covariances may
    be numpy arrays (broadcast together): one vectorised evaluation for all of them."""
    if any(isinstance(v, np.ndarray) for v in (q11, q12, q22)):
        return _expect_array(f, g, q11, q12, q22, ctx)
    if q11 < 0 or q22 < 0 or q12 * q12 > q11 * q22 * (1 + 1e-12):
        raise TheoryError(
            f"not a covariance matrix: q11={q11}, q12={q12}, q22={q22}",
            hint="a kernel must be positive semi-definite",
        )
    what = f"E[{f.name}(u) {g.name}(v)]"
    exact = closed_form(f.expr, g.expr, ctx)
    if exact is not None and q11 > 0 and q22 > 0:
        return _finite(ctx.result(exact(q11, q12, q22)), what, ctx)
    if ctx.fast_float64 and far(q11, q22):
        split = split_expect(f, g, q11, q12, q22)
        if split is not None:
            return _finite(float(split[0]), what, ctx)
    with ctx.active():
        q11, q12, q22 = (ctx.num(v) for v in (q11, q12, q22))
        if q11 == 0 or q22 == 0:
            const, other, q = (f, g, q22) if q11 == 0 else (g, f, q11)
            return _finite(_at_zero(const, ctx) * expect1(other, q, ctx), what, ctx)
        corr = q12 / (ctx.sqrt(q11) * ctx.sqrt(q22))  # q11·q22 may underflow
        if 1 - abs(corr) < DEGENERATE_CORRELATION:
            # v = (q12 / q11) u exactly: a one-point expectation of f(x) g(k x)
            k = q12 / q11
            kinks = (*f.kinks, *(kink / float(k) for kink in g.kinks))
            fn, gn = ctx.function(f), ctx.function(g)
            if f.expr == g.expr and k == 1:
                product = lambda x: fn(x) ** 2  # noqa: E731
            else:
                product = lambda x: fn(x) * gn(k * x)  # noqa: E731
            even = f.parity * g.parity == 1
            distance = _scaled_distance(f, g, abs(float(k)))
            return _finite(ctx.quad1(product, q11, kinks, even, distance), what, ctx)
        value = ctx.quad2(f, g, q11, q12, q22, _distance(f, g))
    return _finite(value, what, ctx)


def _expect_array(
    f: Activation, g: Activation, q11: Any, q12: Any, q22: Any, ctx: Context
) -> np.ndarray:
    ctx.require_float64("array covariances (loop over them at high precision)")
    q11, q12, q22 = np.broadcast_arrays(*(np.asarray(v, float) for v in (q11, q12, q22)))
    if (q11 < 0).any() or (q22 < 0).any() or (q12 * q12 > q11 * q22 * (1 + 1e-12)).any():
        raise TheoryError(
            "not a covariance matrix in the batch", hint="a kernel must be positive semi-definite"
        )
    exact = closed_form(f.expr, g.expr, ctx)
    positive = (q11 > 0) & (q22 > 0)
    out = np.empty(q11.shape)
    if positive.any():
        args = q11[positive], q12[positive], q22[positive]
        out[positive] = exact(*args) if exact is not None else _quadrature_array(f, g, *args)
    for index in zip(*np.nonzero(~positive)):
        out[index] = expect(f, g, q11[index], q12[index], q22[index], ctx)
    if not np.isfinite(out).all():
        raise TheoryError(
            f"the Gaussian expectation E[{f.name}(u) {g.name}(v)] is not finite for some "
            "covariances",
            hint="the activation grows too fast for these variances; lower sigma_w2 or q",
        )
    return out


def expect_gram(f: Activation, stack: np.ndarray, ctx: Context = F64) -> np.ndarray:
    """E[f(u_a) f(u_b)] for every entry of each symmetric covariance matrix in ``stack``
    (B, s, s), the variances read off the diagonals (the dual kernel T(K) of a layer).

    A closed form serves every entry at once; otherwise, in float64, Mehler's expansion
    (mehler.py: m coefficient rows instead of m² two-dimensional integrals) when it vouches
    for its accuracy, or, far from the origin, the exact split of asymptote.py for every
    entry at once; else each upper-triangle entry by quadrature (at high precision each
    distinct entry by the context's own rule)."""
    var = np.diagonal(stack, axis1=1, axis2=2)
    split_serves = var.size and far(var.max(), var.min()) and asymptote(f) is not None
    if ctx.fast_float64 and closed_form(f.expr, f.expr, ctx) is None and not split_serves:
        from workbench.gaussian.mehler import dual_matrices

        found = dual_matrices(f, np.asarray(stack, float))  # None: it cannot vouch
        if found is not None:
            return found
    size = stack.shape[1]
    rows, cols = np.triu_indices(size)
    if ctx.fast_float64 and split_serves:
        q1, q2, cov = var[:, rows], var[:, cols], stack[:, rows, cols]
        upper = split_expect(f, f, q1, cov, q2).reshape(q1.shape)
        out = np.empty(stack.shape)
        out[:, rows, cols] = upper
        out[:, cols, rows] = upper
        return out
    q1, q2, cov = var[:, rows], var[:, cols], stack[:, rows, cols]

    def clipped(a: Any, k: Any, b: Any) -> Any:  # rounding may push |K_ab| past √(q_a q_b)
        bound = (a * b) ** 0.5
        return expect(f, f, a, ctx.clip(k, -bound, bound), b, ctx)

    upper = ctx.elementwise(clipped, q1, cov, q2)
    out = np.empty(stack.shape, dtype=upper.dtype)
    out[:, rows, cols] = upper
    out[:, cols, rows] = upper
    return out


def _quadrature_array(
    f: Activation, g: Activation, q11: np.ndarray, q12: np.ndarray, q22: np.ndarray
) -> np.ndarray:
    """Quadrature for positive variances: perfectly correlated pairs, v = k u with k = q12/q11,
    by the vectorised one-point rule for E[f(u) g(k u)]; the rest by the two-point rule."""
    out = np.empty(q11.shape)
    wide = far(q11, q22)  # far from the origin: the exact split
    if wide.any():
        split = split_expect(f, g, q11[wide], q12[wide], q22[wide])
        if split is not None:
            out[wide] = split
            if wide.all():
                return out
            rest = ~wide
            out[rest] = _quadrature_array(f, g, q11[rest], q12[rest], q22[rest])
            return out
    bound = np.sqrt(q11) * np.sqrt(q22)
    q12 = np.clip(q12, -bound, bound)
    degenerate = 1 - np.abs(q12) / bound < DEGENERATE_CORRELATION
    if degenerate.any() and set((*f.kinks, *g.kinks)) <= {0}:
        k = (q12[degenerate] / q11[degenerate])[:, None]
        distance = _scaled_distance(f, g, float(np.abs(k).max()))
        out[degenerate] = expect1_float64(lambda x: f.numpy(x) * g.numpy(k * x), q11[degenerate],
                                          distance=distance)  # fmt: skip
    else:
        degenerate[:] = False
    rest = ~degenerate
    if rest.any():
        out[rest] = expect2_float64(
            f.numpy, g.numpy, q11[rest], q12[rest], q22[rest], f.kinks, g.kinks, _distance(f, g)
        )
    return out


def _distance(f: Activation, g: Activation) -> float:
    return min(f.singularity_distance, g.singularity_distance)


def _scaled_distance(f: Activation, g: Activation, k: float) -> float:
    """The singularity distance of x ↦ f(x) g(k x): g's singularities move to distance/k."""
    return min(f.singularity_distance, g.singularity_distance / k if k > 0 else np.inf)


def _at_zero(h: Activation, ctx: Context) -> Any:
    return ctx.result(ctx.function(h)(ctx.num(0)))
