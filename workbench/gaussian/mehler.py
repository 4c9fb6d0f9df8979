"""Dual kernels of whole covariance matrices at once, in float64, by Mehler's formula.

For a smooth activation f and covariance matrices whose diagonals hold the variances q_a,
Mehler's expansion of the bivariate normal density (see hermite.py) gives

    E[f(u_a) f(u_b)] = Σ_k a_k(q_a) a_k(q_b) ρ_ab^k,   ρ_ab = Σ_ab / √(q_a q_b),

with a_k(q) = E[f(√q z) h_k(z)] and h_k the normalised Hermite polynomials. The coefficients
depend on one variance each, so an m×m matrix costs m coefficient rows (one matrix product
against h_k at Gauss–Hermite nodes) and a Horner sweep over k of elementwise products,
instead of a two-dimensional quadrature per entry. The diagonal (ρ = 1) is E[f(u_a)²] from the
one-point rule.

Each call vouches for itself or declines (returns None, and the caller integrates entry by
entry): the rule must reproduce E[f²] to COEFFICIENT_TOLERANCE and the Parseval tail after the
last kept term, Σ_{k>K} a_k², must be below TAIL_TOLERANCE·E[f²], which bounds the truncation
error of every entry by Cauchy–Schwarz (hermite.py). Kinked activations (Hermite coefficients
decaying like powers of k) are declined at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache, lru_cache

import numpy as np

from workbench.activations import Activation
from workbench.gaussian.mehler_band import Rows, Walks
from workbench.gaussian.quadrature import expect1_float64

# Hermite terms computed, tier after tier: tanh needs ~300 at q = 1, ~1000 at q = 3.5; near
# the origin a few dozen suffice (arctan at q = 1e-3: 12), at a fifth of the first tier's cost
TERM_TIERS = (128, 640, 2048)
WITNESS_TERMS = 64  # the last terms computed only to witness that the tail has decayed
Z_CUT = 14.0  # |h_k(z)| e^{-z²/2} < 1.09 e^{-z²/4}: beyond |z| = 14 below 1e-21, dropped
PANEL = 0.2  # Gauss–Legendre panel width in z: h_k, k < 2048, has at most two waves in one
PANEL_NODES = 16
COEFFICIENT_TOLERANCE = 1e-14  # the node rule must give E[f²] to this relative accuracy
SMALL_SERIES = 1 << 16  # entries × terms up to which a series is summed term by term at once
TAIL_TOLERANCE = 1e-17  # Σ_{k≥K} a_k² ≤ this × E[f²]: truncation below 1e-16 of the scale


@cache
def _hermite_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes z_i on [−Z_CUT, Z_CUT], weights times the standard
    normal density, and the normalised Hermite polynomials h_k(z_i), k < TERM_TIERS[-1] (by
    the three-term recurrence h_{k+1} = (z h_k − √k h_{k−1})/√(k+1))."""
    x, w = np.polynomial.legendre.leggauss(PANEL_NODES)
    edges = np.linspace(-Z_CUT, Z_CUT, int(round(2 * Z_CUT / PANEL)) + 1)
    half = np.diff(edges)[:, None] / 2
    z = (edges[:-1, None] + half * (x + 1)).ravel()
    w = (half * w).ravel() * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    terms = TERM_TIERS[-1]
    h = np.empty((z.size, terms))
    h[:, 0] = 1.0
    h[:, 1] = z
    for k in range(1, terms - 1):
        h[:, k + 1] = (z * h[:, k] - np.sqrt(k) * h[:, k - 1]) / np.sqrt(k + 1)
    return z, w, h


def node_rule() -> tuple[np.ndarray, np.ndarray]:
    """The composite rule's nodes z_i and weights (times the standard normal density)."""
    z, w, _ = _hermite_table()
    return z, w


@cache
def _tier(terms: int) -> np.ndarray:
    """The first ``terms`` columns of the Hermite table, contiguous (a strided view of the
    whole table multiplies several times slower)."""
    return np.ascontiguousarray(_hermite_table()[2][:, :terms])


def coefficients(f: Activation, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, norm2): a[i, k] = a_k(q_i) for k < K (K the fewest terms meeting TAIL_TOLERANCE
    in every row, the next WITNESS_TERMS computed to show the decay) and norm2[i] =
    E[f(u_i)²]; None when the rule cannot vouch for them. A layer asks twice for the same
    rows (its dual kernel and its gap): the last few answers are kept. Inside ``walk_bands``
    (a deep repeat block's passes), variances that walk slowly are served from a band of
    Chebyshev series in q once one vouches for itself (mehler_band.py)."""
    q = np.asarray(variances, float).ravel()
    walks = _WALKS.get()
    if walks is None or not q.size:
        return _direct_rows(f, q.tobytes())
    key = (f, q.tobytes())
    found = walks.kept.get(key)
    if found is None:
        served = walks.serve(f, q)
        found = None if served is None else walks.keep(key, (served, _norm2(f, q)))
    if found is not None:
        return found
    found = _direct_rows(f, q.tobytes())
    if found is not None:
        walks.record(f, q, lambda points, terms: _rows(f, points, terms))
    return found


@lru_cache(maxsize=8)
def _direct_rows(f: Activation, packed: bytes) -> Rows | None:
    """``_rows`` at the variances packed as bytes, the last few kept (process-wide: they are
    the same whoever asks)."""
    return _rows(f, np.frombuffer(packed))


@contextmanager
def walk_bands() -> Iterator[None]:
    """Within the block (a repeat block's passes), rows of slowly walking variances may come
    from bands built in it; outside every row is direct, so no result depends on what was
    computed before it in the process (a band's rows differ from direct ones by rounding, and
    a near-critical ξ_c = −1/log χ_c turns 1e-14 in χ_c into 1e-4)."""
    if _WALKS.get() is not None:
        yield
        return
    token = _WALKS.set(Walks())
    try:
        yield
    finally:
        _WALKS.reset(token)


_WALKS: ContextVar[Walks | None] = ContextVar("mehler_walks", default=None)


def _norm2(f: Activation, q: np.ndarray) -> np.ndarray:
    """E[f(u_i)²] by the one-point rule (read-only: shared by the caches)."""
    norm2 = expect1_float64(lambda x: f.numpy(x) ** 2, q, distance=f.singularity_distance)
    norm2.flags.writeable = False
    return norm2


def _rows(f: Activation, q: np.ndarray, min_terms: int = 0) -> Rows | None:
    """The rows at the variances q by the node rule (at least ``min_terms`` columns)."""
    if f.kinks or not (q > 0).all():
        return None
    norm2 = _norm2(f, q)
    scale = np.maximum(norm2, np.finfo(float).tiny)
    z, w, h = _hermite_table()
    with np.errstate(all="ignore"):
        values = f.numpy(np.sqrt(q)[:, None] * z)
    if not np.isfinite(values).all():
        return None
    if (np.abs((values * values) @ w - norm2) > COEFFICIENT_TOLERANCE * scale).any():
        return None  # φ(√q z) too sharp for the panels (large q)
    weighted = values * w
    for terms in TERM_TIERS:
        if terms < min_terms + WITNESS_TERMS:
            continue
        a = weighted @ _tier(terms)
        tails = np.cumsum((a * a)[:, ::-1], axis=1)[:, ::-1]  # tails[i, k] = Σ_{j≥k} a_j²
        fine = (tails <= TAIL_TOLERANCE * scale[:, None]).all(axis=0)
        if fine[terms - WITNESS_TERMS]:
            kept = a[:, : max(int(np.argmax(fine)), 1, min_terms)]
            kept.flags.writeable = False  # shared by the caches
            return kept, norm2
    return None  # the coefficients decay too slowly (φ nearly singular on the scale √q)


def dual_matrices(f: Activation, stack: np.ndarray) -> np.ndarray | None:
    """E[f(u_a) f(u_b)] for each symmetric covariance matrix in ``stack`` (B, s, s), every
    entry at once; None when the expansion declines (see the module docstring)."""
    variances = np.diagonal(stack, axis1=1, axis2=2)
    distinct, index = np.unique(variances, return_inverse=True)  # (as the gap rule asks)
    found = coefficients(f, distinct)
    if found is None:
        return None
    a, norm2 = found
    a, norm2 = a[index.ravel()].reshape(*variances.shape, -1), norm2[index.ravel()]
    root = np.sqrt(variances)
    rho = np.clip(stack / (root[:, :, None] * root[:, None, :]), -1.0, 1.0)
    if rho.size * a.shape[-1] <= SMALL_SERIES:  # every term at once: no loop over k
        out = np.einsum("bik,bjk,bijk->bij", a, a, rho[..., None] ** np.arange(a.shape[-1]))
    else:
        out = a[:, :, None, -1] * a[:, None, :, -1]
        for k in range(a.shape[-1] - 2, -1, -1):  # Horner in ρ, elementwise
            out *= rho
            out += a[:, :, None, k] * a[:, None, :, k]
    diagonal = np.arange(stack.shape[1])
    out[:, diagonal, diagonal] = norm2.reshape(variances.shape)
    return out
