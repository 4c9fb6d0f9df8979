"""Weight initialisations for the simulator, also usable on a practitioner's own layers.

Conventions (DESIGN.md): weights N(0, σ_w²/fan_in) — for a conv with variance vector v the
tap β gets variance σ_w² v_β / C_in — and biases N(0, σ_b²). Orthogonal schemes are scaled so
that every output unit carries σ_w² per fan-in, as the Gaussian ones do: √σ_w² when the
matrix has orthonormal rows (fan_in ≥ fan_out), √(σ_w² fan_out/fan_in) when it has
orthonormal columns (fan_in < fan_out: each row then has norm² fan_in/fan_out).

* ``orthogonal_matrix``: Haar-distributed (semi-)orthogonal matrices (QR with the sign fix).
* ``orthogonal_conv_kernel``: xiao2018 Algorithm 1 — block convolutions of random symmetric
  projections, exactly norm-preserving under circular padding (c_in ≤ c_out).
* ``delta_orthogonal_kernel``: xiao2018 Algorithm 2 (§C.2) — an orthogonal matrix on the
  centre tap, zeros elsewhere.

Kernels use torch's layout (c_out, c_in, *k), cross-correlation, centre tap at (k − 1) // 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.errors import WorkbenchError


def orthogonal_matrix(
    rows: int, cols: int, generator: torch.Generator | None = None, batch: int | None = None,
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """A Haar-random rows × cols matrix with orthonormal rows (rows ≤ cols) or columns."""
    shape = (batch or 1, max(rows, cols), min(rows, cols))
    gauss = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    out = q if rows >= cols else q.transpose(-2, -1)
    return out if batch is not None else out[0]


def scaled_orthogonal(
    rows: int, cols: int, sigma_w2: float, generator: torch.Generator | None = None,
    batch: int | None = None, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """A Haar (semi-)orthogonal rows × cols matrix whose rows have norm² σ_w² on average,
    i.e. E[(W x)_i²] = σ_w² ‖x‖² / cols like W ~ N(0, σ_w²/cols)."""
    gain = sigma_w2 * max(1.0, rows / cols)
    return orthogonal_matrix(rows, cols, generator, batch, dtype, device) * gain**0.5


def _symmetric_projection(
    n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """A random orthogonal projection P = U_S U_Sᵀ onto a random subset S of the columns of a
    Haar orthogonal U (so P is symmetric and P² = P)."""
    u = orthogonal_matrix(n, n, generator, dtype=dtype, device=device)
    keep = torch.rand(n, generator=generator, device=device) < 0.5
    u = u[:, keep]
    return u @ u.T


def _block_conv_step(kernel: torch.Tensor, projection: torch.Tensor, axis: int) -> torch.Tensor:
    """K ← K ⊛ [P, 1 − P] along spatial ``axis`` (xiao2018 eq. 2.17, one dimension at a time):
    one tap longer, new[β] = K[β] P + K[β − 1] (1 − P). Each step's Fourier symbol
    P + (1 − P) e^{iω} is unitary, so the product stays norm-preserving."""
    moved = kernel.movedim(axis, -3)
    eye = torch.eye(projection.shape[0], dtype=projection.dtype, device=projection.device)
    stay = torch.nn.functional.pad(moved @ projection, (0, 0, 0, 0, 0, 1))
    shift = torch.nn.functional.pad(moved @ (eye - projection), (0, 0, 0, 0, 1, 0))
    return (stay + shift).movedim(-3, axis)


def orthogonal_conv_kernel(
    kernel_size: Sequence[int], c_in: int, c_out: int, sigma_w2: float = 1.0,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """xiao2018 Algorithm 1 for any number of spatial dimensions: start from K = [I] (1 tap),
    convolve with [P, 1 − P] (k − 1) times per dimension, then K[β] ← H K[β] with H a
    c_in × c_out matrix with orthonormal rows, scaled so each output channel carries σ_w²
    (× c_out/c_in: see the module docstring). Returns (c_out, c_in, *kernel_size)."""
    if c_in > c_out:
        raise WorkbenchError(
            f"an orthogonal conv kernel needs c_in <= c_out, got {c_in} > {c_out}",
            hint="use init: gaussian, or more output channels",
        )
    dims = len(kernel_size)
    kernel = torch.eye(c_out, dtype=dtype, device=device).reshape(*([1] * dims), c_out, c_out)
    for axis, size in enumerate(kernel_size):
        for _ in range(size - 1):
            projection = _symmetric_projection(c_out, generator, dtype, device)
            kernel = _block_conv_step(kernel, projection, axis)
    h = orthogonal_matrix(c_in, c_out, generator, dtype=dtype, device=device)
    kernel = h @ kernel  # (*k, c_in, c_out)
    gain = sigma_w2 * c_out / c_in
    return (gain**0.5) * kernel.movedim(-1, 0).movedim(-1, 1).contiguous()


def delta_orthogonal_kernel(
    kernel_size: Sequence[int], c_in: int, c_out: int, sigma_w2: float = 1.0,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """xiao2018 Algorithm 2: H on the centre tap ((k − 1) // 2 per dimension), zero elsewhere;
    H (c_out × c_in) is ``scaled_orthogonal``."""
    kernel = torch.zeros((c_out, c_in, *kernel_size), dtype=dtype, device=device)
    centre = tuple((k - 1) // 2 for k in kernel_size)
    kernel[(slice(None), slice(None), *centre)] = scaled_orthogonal(
        c_out, c_in, sigma_w2, generator, dtype=dtype, device=device
    )
    return kernel


def gaussian_conv_kernel(
    kernel_size: Sequence[int], c_in: int, c_out: int, sigma_w2: float = 1.0,
    variance: Sequence[float] | None = None, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """Taps β ~ N(0, σ_w² v_β / c_in), v uniform (1/taps) by default (xiao2018 eq. 2.2)."""
    taps = 1
    for k in kernel_size:
        taps *= k
    v = torch.full((taps,), 1.0 / taps, dtype=dtype, device=device)
    if variance is not None:
        v = torch.as_tensor(variance, dtype=dtype, device=device)
    std = (sigma_w2 * v / c_in).sqrt().reshape(kernel_size)
    shape = (c_out, c_in, *kernel_size)
    return torch.randn(shape, generator=generator, dtype=dtype, device=device) * std


def init_linear_(
    layer: nn.Linear, sigma_w2: float, sigma_b2: float = 0.0, kind: str = "gaussian",
    generator: torch.Generator | None = None,
) -> nn.Linear:  # fmt: skip
    """Re-initialise an ``nn.Linear`` in place: weights N(0, σ_w²/fan_in) or
    ``scaled_orthogonal``; biases N(0, σ_b²)."""
    out_features, in_features = layer.weight.shape
    opts = {"dtype": layer.weight.dtype, "device": layer.weight.device}
    with torch.no_grad():
        if kind == "gaussian":
            weight = torch.randn(layer.weight.shape, generator=generator, **opts)
            layer.weight.copy_(weight * (sigma_w2 / in_features) ** 0.5)
        elif kind == "orthogonal":
            ortho = scaled_orthogonal(out_features, in_features, sigma_w2, generator, **opts)
            layer.weight.copy_(ortho)
        else:
            raise WorkbenchError(f"unknown dense init {kind!r}", hint="gaussian or orthogonal")
        _init_bias(layer.bias, sigma_b2, generator)
    return layer


def init_conv_(
    layer: nn.Conv1d | nn.Conv2d, sigma_w2: float, sigma_b2: float = 0.0, kind: str = "gaussian",
    variance: Sequence[float] | None = None, generator: torch.Generator | None = None,
) -> nn.Module:  # fmt: skip
    """Re-initialise an ``nn.Conv1d``/``nn.Conv2d`` in place: Gaussian with variance vector v,
    ``orthogonal`` (Algorithm 1) or ``delta_orthogonal`` (Algorithm 2); biases N(0, σ_b²).
    The norm-preservation guarantees hold with circular padding (``padding_mode="circular"``)."""
    c_out, c_in, *size = layer.weight.shape
    opts = {"generator": generator, "dtype": layer.weight.dtype, "device": layer.weight.device}
    with torch.no_grad():
        layer.weight.copy_(conv_kernel(kind, size, c_in, c_out, sigma_w2, variance, **opts))
        _init_bias(layer.bias, sigma_b2, generator)
    return layer


def conv_kernel(
    kind: str, size: Sequence[int], c_in: int, c_out: int, sigma_w2: float,
    variance: Sequence[float] | None = None, **opts,
) -> torch.Tensor:  # fmt: skip
    """The kernel of a named init (gaussian | orthogonal | delta_orthogonal)."""
    if kind == "gaussian":
        return gaussian_conv_kernel(size, c_in, c_out, sigma_w2, variance, **opts)
    if kind == "orthogonal":
        return orthogonal_conv_kernel(size, c_in, c_out, sigma_w2, **opts)
    if kind == "delta_orthogonal":
        return delta_orthogonal_kernel(size, c_in, c_out, sigma_w2, **opts)
    raise WorkbenchError(
        f"unknown conv init {kind!r}", hint="gaussian, orthogonal or delta_orthogonal"
    )


def _init_bias(bias: torch.Tensor | None, sigma_b2: float, generator: torch.Generator | None):
    if bias is not None:
        noise = torch.randn(bias.shape, generator=generator, dtype=bias.dtype, device=bias.device)
        bias.copy_(noise * sigma_b2**0.5)
