"""Expectations over one channel's batch vector z ~ N(0, Σ) under batch normalisation, where
it is divided by its own norm (mean_field_batchnorm §3). Each uses the Laplace form
1/‖z‖^{2k} = ∫₀^∞ t^{k−1} e^{−t‖z‖²} dt / (k − 1)!: under the weight e^{−t‖z‖²} the vector
is Gaussian again, with covariance Σ_t = Σ (I + 2tΣ)^{−1} and mass Π_j (1 + 2tλ_j)^{−1/2},
so in the eigenbasis of Σ every integrand is explicit and a few scalar integrals in s = log t
do the rest (float64).

In s the integrands are analytic in the strip |Im s| < π (their poles sit where
1 + 2e^s λ = 0) and decay exponentially at both ends, so the trapezoidal rule converges
geometrically (error ~ e^{−2π²/h}); every integral is taken on all nodes at once, and the
rule at step h is checked against the one at 2h (its even nodes), halving h until they agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workbench.errors import TheoryError

S_RANGE = 60.0  # s = log t over [−60, 60]: e^{−60} and the rank ≥ 3 tail beyond e^{60} vanish
FIRST_STEP = 0.25  # trapezoid step in s (error ~ e^{−2π²/h} ≈ 1e−34 for analytic integrands)
AGREEMENT = 1e-12  # relative agreement of the rules at h and 2h
SMALLEST_STEP = 1 / 64


def _eigen(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Eigenvalues scaled to max 1, eigenvectors, and the scale."""
    cov = np.asarray(cov, float)
    lam, vec = np.linalg.eigh((cov + cov.T) / 2)
    lam = np.clip(lam, 0.0, None)
    if lam.max() <= 0:
        raise TheoryError("the batch has no variance to normalise")
    scale = float(lam.max())
    return lam / scale, vec, scale


@dataclass(frozen=True)
class _Nodes:
    """Trapezoid nodes in s = log t: t, the weight h·t·mass(t) and Σ_t's eigenvalues ℓ(t)."""

    t: np.ndarray  # (S,)
    weight: np.ndarray  # (S,)
    ell: np.ndarray  # (S, n): λ_i / (1 + 2tλ_i)


def _nodes(lam: np.ndarray, step: float) -> _Nodes:
    s = np.arange(-S_RANGE, S_RANGE + step / 2, step)
    t = np.exp(s)
    grown = 1 + 2 * t[:, None] * lam[None, :]
    mass = np.exp(-0.5 * np.log(grown).sum(axis=1))
    return _Nodes(t, step * t * mass, lam[None, :] / grown)


def _laplace(integral: Callable[[_Nodes], np.ndarray], lam: np.ndarray) -> np.ndarray:
    """``integral(nodes)`` (a trapezoid sum over the nodes) at the first step whose value
    agrees with the one at twice the step (its even nodes, weights doubled)."""
    step = FIRST_STEP
    while True:
        fine = _nodes(lam, step)
        value = integral(fine)
        coarse = _Nodes(fine.t[::2], 2 * fine.weight[::2], fine.ell[::2])
        error = np.abs(integral(coarse) - value).max()
        if error <= AGREEMENT * max(np.abs(value).max(), 1e-300):
            return value
        if step <= SMALLEST_STEP:
            raise TheoryError(
                f"the batch-norm integral did not converge (relative error {error:.1e})",
                hint="the batch's covariance is too ill-conditioned; use more distinct inputs",
            )
        step /= 2


def expect_normalized_outer(cov: np.ndarray) -> np.ndarray:
    """E[z zᵀ / ‖z‖²] for z ~ N(0, cov) (the second moments of a batch-normalised vector):
    U diag(f) Uᵀ with f_i = ∫₀^∞ λ_i (1 + 2tλ_i)^{−1} Π_j (1 + 2tλ_j)^{−1/2} dt."""
    lam, vec, _ = _eigen(cov)  # E[zzᵀ/‖z‖²] is scale-free
    f = _laplace(lambda nodes: nodes.weight @ nodes.ell, lam)
    return (vec * f) @ vec.T


def _need_rank(lam: np.ndarray, what: str) -> None:
    """E[1/‖z‖²] is finite only when z spans at least 3 dimensions."""
    rank = int((lam > 1e-12).sum())
    if rank < 3:
        raise TheoryError(
            f"{what}: the batch vector spans {rank} dimension(s), and E[1/‖z‖²] of a Gaussian "
            "is infinite below 3 — gradients through a batch norm over so small a batch have "
            "no finite second moment",
            hint="use a batch (inputs × pixels) of at least 4 distinct inputs",
        )


def expect_inverse_norm(cov: np.ndarray) -> float:
    """E[1/‖z‖²] = ∫₀^∞ Π_j (1 + 2tλ_j)^{−1/2} dt (rank ≥ 3)."""
    lam, _, scale = _eigen(cov)
    _need_rank(lam, "E[1/|z|^2]")
    return float(_laplace(lambda nodes: np.array([nodes.weight.sum()]), lam)[0]) / scale


def expect_projected(cov: np.ndarray, a: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """E[P A P / ‖z‖²] with P = C − z zᵀ/‖z‖² (C the centring projection, C z = z): the
    second moments of the gradient through batch statistics, N γ² E[P G̃ P / ‖z‖²]
    (∂ẑ/∂h = (√N/‖z‖) P for ẑ = √N z/‖z‖, z = C h). Expanding P,
    E = C A C E[‖z‖⁻²] − E[(zzᵀ A C + C A zzᵀ) ‖z‖⁻⁴] + E[zzᵀ A zzᵀ ‖z‖⁻⁶], and under the
    Laplace weight E[zzᵀ A zzᵀ] = Σ_t (A + Aᵀ) Σ_t + tr(A Σ_t) Σ_t (Isserlis)."""
    lam, vec, scale = _eigen(cov)
    _need_rank(lam, "the gradient through batch statistics")
    ae = vec.T @ np.asarray(a, float) @ vec
    ce = vec.T @ np.asarray(centre, float) @ vec
    cac = ce @ ae @ ce
    sym = ae + ae.T
    d = np.diagonal(ae)
    left, right = ae @ ce, ce @ ae

    def integral(nodes: _Nodes) -> np.ndarray:
        w, ell = nodes.weight, nodes.ell  # the terms' integrals are sums over the nodes
        tw = w * nodes.t
        half = 0.5 * tw * nodes.t
        first = w.sum() * cac
        v = tw @ ell  # ∫ t ℓ_i
        second = v[:, None] * left + right * v[None, :]
        gram = (ell * half[:, None]).T @ ell  # ∫ ½ t² ℓ_i ℓ_j
        diag = (half * (ell @ d)) @ ell  # ∫ ½ t² (ℓ·diag A) ℓ_i
        return first - second + gram * sym + np.diag(diag)

    value = _laplace(integral, lam)
    return vec @ value @ vec.T / scale


SAMPLE_BUDGET = 2**24  # batch vectors × N² entries per sampled expectation
MIN_SAMPLES = 2**9  # large batches: fewer vectors, each averaging over N² entries


def sample_gated_projection(
    cov: np.ndarray,
    a: np.ndarray,
    centre: np.ndarray,
    gate: Callable[[np.ndarray], np.ndarray],
    through_statistics: bool,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """E[Q D A D Qᵀ / ‖z‖²] by Monte-Carlo over z ~ N(0, cov), with D = diag(gate(ẑ)),
    ẑ = √N z/‖z‖, and Q = P = C − zzᵀ/‖z‖² (``through_statistics``) or Q = I. This is the
    backward map of a batch norm followed by an activation: φ′ depends on the same normalised
    vector that P projects, so the two cannot be averaged separately (for relu the gated
    vector lies mostly along ẑ and the batch mean, and P removes most of it). Returns the
    mean and the largest standard error relative to the largest entry."""
    lam, vec, scale = _eigen(cov)
    _need_rank(lam, "the gradient through batch norm and its activation")
    n = len(lam)
    root = vec * np.sqrt(lam)  # z = root @ ξ
    samples = max(MIN_SAMPLES, SAMPLE_BUDGET // (n * n))
    rng = np.random.default_rng(seed)
    if np.allclose(centre, np.eye(n) - 1.0 / n):  # C B C in O(n²): subtract the means

        def centred(b: np.ndarray) -> np.ndarray:
            rows, cols = b.mean(axis=2, keepdims=True), b.mean(axis=1, keepdims=True)
            return b - rows - cols + b.mean(axis=(1, 2), keepdims=True)
    else:

        def centred(b: np.ndarray) -> np.ndarray:
            return centre @ b @ centre

    total = np.zeros((n, n))
    square = np.zeros((n, n))
    done = 0
    chunk = max(1, min(samples, 2**22 // (n * n)))
    while done < samples:
        k = min(chunk, samples - done)
        z = rng.standard_normal((k, n)) @ root.T
        norm2 = np.einsum("ki,ki->k", z, z)
        unit = z / np.sqrt(norm2)[:, None]
        d = gate(np.sqrt(n) * unit)
        b = a[None] * d[:, :, None] * d[:, None, :]  # D A D per sample
        if through_statistics:
            b = centred(b)  # C B C (z lies in C's range, so C u = u)
            bu = np.einsum("kij,kj->ki", b, unit)
            ub = np.einsum("ki,kij->kj", unit, b)
            ubu = np.einsum("ki,ki->k", ub, unit)
            b = (b - unit[:, :, None] * ub[:, None, :] - bu[:, :, None] * unit[:, None, :]
                 + ubu[:, None, None] * unit[:, :, None] * unit[:, None, :])  # fmt: skip
        b = b / norm2[:, None, None]
        total += b.sum(axis=0)
        square += (b * b).sum(axis=0)
        done += k
    mean = total / samples
    spread = np.sqrt(np.maximum(square / samples - mean * mean, 0) / samples)
    largest = float(np.abs(mean).max())
    relative = float(spread.max() / largest) if largest > 0 else 0.0
    return mean / scale, relative
