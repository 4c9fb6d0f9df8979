"""The kernel state carried from node to node: second moments, NTK, means and their layout.

The state after a node holds the second moments E[y_a y_b] of its output over the m inputs
(``nngp``), the NTK (``ntk``), the per-input mean of the output (``mean``: the same for every
channel in the wide limit) and, when the output is φ(h) of a Gaussian field h, that field's
kernels and φ (applied lazily, so consecutive activations compose). Layouts: ``flat`` (m, m);
``full`` (m, m, *S, *S) pixel-pixel kernels; ``diagonal`` (m, m, *S), same-pixel pairs only
(enough for a flatten readout: xiao2018 eq. 2.5, xiao_bahri eq. 18). ``flattened``: same-pixel
kernels of flattened features, awaiting the dense layer that averages them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from workbench.precision import F64, Context


@dataclass(frozen=True)
class KernelState:
    nngp: np.ndarray
    ntk: np.ndarray | None
    mean: np.ndarray  # (m,) or (m, *S)
    mode: str  # flat | full | diagonal
    spatial: tuple[int, ...] = ()
    channels: int = 0
    field_nngp: np.ndarray | None = None  # the Gaussian field this output is φ of
    field_ntk: np.ndarray | None = None
    phi: Any = None  # Activation pending on the field (None: the output is realized)
    notes: tuple[str, ...] = ()
    ctx: Context = F64
    flattened: bool = False
    # flat mode: G_ab = √(K_aa K_bb) − K_ab of the current kernel (the field's while φ is
    # pending) for the pairs a < b in np.triu_indices order, carried without cancellation
    # (gaussian.gap); None where not carried
    gap: np.ndarray | None = None

    @property
    def m(self) -> int:
        return self.nngp.shape[0]

    @property
    def pixels(self) -> int:
        return int(np.prod(self.spatial)) if self.spatial else 1

    def replace(self, **changes: Any) -> KernelState:
        """The state with ``changes``; a new NNGP without a new gap drops the gap (a rule
        that does not carry it leaves none stale)."""
        if "nngp" in changes and "gap" not in changes:
            changes["gap"] = None
        return replace(self, **changes)

    def noted(self, note: str) -> KernelState:
        """The state with ``note`` added once."""
        return self if note in self.notes else replace(self, notes=(*self.notes, note))

    def repeats(self, before: KernelState) -> bool:
        """Whether this state is exactly ``before`` (every array bitwise, the same pending φ):
        a deterministic map that returned its input will return it again."""
        if (self.phi, self.mode, self.flattened) != (before.phi, before.mode, before.flattened):
            return False
        for name in ("nngp", "ntk", "mean", "field_nngp", "field_ntk", "gap"):
            a, b = getattr(self, name), getattr(before, name)
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                return False
        return True

    def largest_entry(self) -> float:
        """The largest |entry| of the NNGP and NTK (of the field when φ is pending)."""
        arrays = [self.nngp, self.ntk, self.field_nngp, self.field_ntk]
        return max(float(np.max(np.abs(np.asarray(a, float)))) for a in arrays if a is not None)

    def as_matrices(self, kernel: np.ndarray) -> np.ndarray:
        """A kernel of this layout as a stack of symmetric matrices over (input[, pixel])
        pairs: flat (1, m, m); full (1, m·n, m·n); diagonal (n, m, m), one per pixel."""
        m, n = self.m, self.pixels
        if self.mode == "flat":
            return kernel[None]
        if self.mode == "full":
            return kernel.reshape(m, m, n, n).transpose(0, 2, 1, 3).reshape(1, m * n, m * n)
        return np.moveaxis(kernel.reshape(m, m, n), 2, 0)

    def from_matrices(self, stack: np.ndarray) -> np.ndarray:
        """The inverse of ``as_matrices``."""
        m, n = self.m, self.pixels
        if self.mode == "flat":
            return stack[0]
        if self.mode == "full":
            return stack[0].reshape(m, n, m, n).transpose(0, 2, 1, 3).reshape(self.nngp.shape)
        return np.moveaxis(stack, 0, 2).reshape(self.nngp.shape)

    def own_variances(self, kernel: np.ndarray) -> np.ndarray:
        """Var of each input (and pixel) under ``kernel``: shape (m,) or (m, *S)."""
        m = self.m
        diag = kernel[np.arange(m), np.arange(m)]
        if self.mode == "full":
            n = self.pixels
            return diag.reshape(m, n, n)[:, np.arange(n), np.arange(n)].reshape(m, *self.spatial)
        return diag

    def outer_mean(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """E[x_a] E[y_b] for per-input (and pixel) means a, b, laid out like a kernel."""
        m = self.m
        if self.mode == "flat":
            return np.outer(a, b)
        if self.mode == "full":
            n = self.pixels
            out = np.einsum("ap,bq->abpq", a.reshape(m, n), b.reshape(m, n))
            return out.reshape(m, m, *self.spatial, *self.spatial)
        out = np.einsum("ap,bp->abp", a.reshape(m, -1), b.reshape(m, -1))
        return out.reshape(m, m, *self.spatial)

    def same_pixel(self, kernel: np.ndarray | None) -> np.ndarray | None:
        """The same-pixel pairs (m, m, *S) of a full kernel (a diagonal one is returned)."""
        if kernel is None or self.mode != "full":
            return kernel
        m, n = self.m, self.pixels
        k = kernel.reshape(m, m, n, n)[:, :, np.arange(n), np.arange(n)]
        return k.reshape(m, m, *self.spatial)

    def pixel_average(self, kernel: np.ndarray | None) -> np.ndarray | None:
        """Every (input pair)'s kernel averaged over its pixel entries (xiao_bahri eq. 18)."""
        return None if kernel is None else kernel.reshape(self.m, self.m, -1).mean(axis=2)
