"""Expectations over one channel's batch vector z ~ N(0, Σ) under batch normalisation, where
it is divided by its own norm (mean_field_batchnorm §3). Each uses the Laplace form
1/‖z‖^{2k} = ∫₀^∞ t^{k−1} e^{−t‖z‖²} dt / (k − 1)!: under the weight e^{−t‖z‖²} the vector
is Gaussian again, with covariance Σ_t = Σ (I + 2tΣ)^{−1} and mass Π_j (1 + 2tλ_j)^{−1/2},
so in the eigenbasis of Σ every integrand is explicit and one adaptive vector quadrature in
s = log t does the rest (float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.integrate import quad_vec

from workbench.errors import TheoryError


def _eigen(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Eigenvalues scaled to max 1, eigenvectors, and the scale."""
    cov = np.asarray(cov, float)
    lam, vec = np.linalg.eigh((cov + cov.T) / 2)
    lam = np.clip(lam, 0.0, None)
    if lam.max() <= 0:
        raise TheoryError("the batch has no variance to normalise")
    scale = float(lam.max())
    return lam / scale, vec, scale


def _laplace(integrand: Callable[[float, np.ndarray], np.ndarray], lam: np.ndarray) -> np.ndarray:
    """∫₀^∞ integrand(t, mass(t)) dt with mass(t) = Π (1 + 2tλ)^{−1/2}, integrated in log t."""

    def in_log(s: float) -> np.ndarray:
        t = np.exp(s)
        mass = np.exp(-0.5 * np.log1p(2 * t * lam).sum())
        return t * integrand(t, mass)

    value, _ = quad_vec(in_log, -60.0, 60.0, epsabs=1e-14, epsrel=1e-12, limit=500)
    return value


def expect_normalized_outer(cov: np.ndarray) -> np.ndarray:
    """E[z zᵀ / ‖z‖²] for z ~ N(0, cov) (the second moments of a batch-normalised vector):
    U diag(f) Uᵀ with f_i = ∫₀^∞ λ_i (1 + 2tλ_i)^{−1} Π_j (1 + 2tλ_j)^{−1/2} dt."""
    lam, vec, _ = _eigen(cov)  # E[zzᵀ/‖z‖²] is scale-free
    f = _laplace(lambda t, mass: lam / (1 + 2 * t * lam) * mass, lam)
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
    return float(_laplace(lambda t, mass: np.array([mass]), lam)[0]) / scale


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
    n = len(lam)

    def integrand(t: float, mass: float) -> np.ndarray:
        ell = lam / (1 + 2 * t * lam)  # Σ_t in the eigenbasis
        first = cac
        second = t * (ell[:, None] * (ae @ ce) + (ce @ ae) * ell[None, :])
        third = 0.5 * t * t * (np.outer(ell, ell) * sym + (ell @ np.diagonal(ae)) * np.diag(ell))
        return (mass * (first - second + third)).ravel()

    value = _laplace(integrand, lam).reshape(n, n)
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
