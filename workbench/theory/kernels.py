"""NNGP kernel Σ/K and NTK Θ of m inputs through every node kind of a spec, walking its
compiled graph (``workbench.graph``); chain specs in float64 run as one fused program instead
(``kernel_program``, lowered from the same graph).

The state after a node holds the second moments E[y_a y_b] of its output over the m inputs
(``nngp``), the NTK (``ntk``), the per-input mean of the output (``mean``: the same for every
channel in the wide limit) and, when the output is φ(h) of a Gaussian field h, that field's
kernels and φ (applied lazily, so consecutive activations compose). Shapes: (m, m) for flat
features; (m, m, *S, *S) for spatial features in ``full`` mode; (m, m, *S) in ``diagonal`` mode
(same-pixel pairs only, enough for a flatten readout: xiao2018 eq. 2.5, xiao_bahri eq. 18).

Rules (σ's of the node; v the conv's variance vector; T, Ṫ the dual kernels of φ):
* dense  (xiao_bahri eq. 6): K' = σ_w² T(K) + σ_b²; Θ' = K' + σ_w² Ṫ(K) ⊙ Θ (``ntk``) or
  Θ' = fan_in T(K) + 1 + σ_w² Ṫ(K) ⊙ Θ (``standard``: gradients w.r.t. W itself).
* conv   (xiao2018 eqs. 2.2–2.5; xiao_bahri eq. 31): the same with T(K) replaced by A_v ⋆ T(K),
  [A_v ⋆ X](α, α') = Σ_β v_β X(α + β, α' + β) on the periodic grid.
* pool / flatten (xiao_bahri eq. 18): the mean over all pixel pairs / over same-pixel pairs.
* residual: K_y = K_x + s (m_x m_bᵀ + m_b m_xᵀ) + s² K_b — the cross terms of the stream and
  the body reduce to products of means (the body's last field is independent of the stream at
  infinite width), so bodies ending in a nonlinearity are covered.
* bn: see ``_batch_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np
import sympy as sp

from workbench.activations import Activation, X
from workbench.compile.graph import spec_graph
from workbench.errors import TheoryError, UnsupportedError
from workbench.gaussian import expect, expect1, expect_normalized_outer
from workbench.gaussian.closed_forms import closed_form
from workbench.nodes import Act, BatchNorm, Conv, Dense, Flatten, Node, Pool, Repeat, Residual
from workbench.precision import F64, Context
from workbench.spec.model import Spec
from workbench.theory.kernel_program import (
    Program,
    compiled_run,
    conv_taps,
    lower,
    pack,
    run,
    unpack,
)

OVERFLOW_GUARD = 1e150  # beyond this, products of two kernel entries overflow float64
PARAMETERIZATIONS = ("ntk", "standard")


@dataclass
class KernelState:
    nngp: np.ndarray
    ntk: np.ndarray | None
    mean: np.ndarray  # (m,) or (m, *S)
    mode: str  # flat | full | diagonal
    spatial: tuple[int, ...] = ()
    channels: int = 0
    # the Gaussian field this output is φ of (None: the output is itself the field / realized)
    field_nngp: np.ndarray | None = None
    field_ntk: np.ndarray | None = None
    phi: Activation | None = None
    notes: list[str] = field(default_factory=list)
    ctx: Context = F64
    flattened: bool = False  # same-pixel kernels of flattened features, awaiting a dense layer

    @property
    def m(self) -> int:
        return self.nngp.shape[0]


def initial_state(inputs: np.ndarray, mode: str, want_ntk: bool, ctx: Context = F64) -> KernelState:
    """The inputs' own second moments: X of shape (m, C) or (m, C, *S), averaged over channels
    (the 1/fan_in of the first layer's weights). At high precision the arrays hold mpf."""
    x = np.asarray(inputs, float)
    m, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    if not np.isfinite(x).all():
        raise TheoryError("inputs must be finite")
    if ctx.name != "float64":
        with ctx.active():
            x = np.vectorize(ctx.num, otypes=[object])(x)
    if not spatial:
        nngp = x @ x.T / channels
        mean = x.mean(axis=1)
        mode = "flat"
    else:
        flat = x.reshape(m, channels, -1)
        if mode == "full":
            nngp = np.einsum("acp,bcq->abpq", flat, flat) / channels
            nngp = nngp.reshape(m, m, *spatial, *spatial)
        else:
            nngp = np.einsum("acp,bcp->abp", flat, flat).reshape(m, m, *spatial) / channels
        mean = x.mean(axis=1)
    ntk = np.zeros_like(nngp) if want_ntk else None
    return KernelState(nngp, ntk, mean, mode, tuple(spatial), channels, ctx=ctx)


def propagate(graph: nx.DiGraph, state: KernelState, parameterization: str = "ntk") -> KernelState:
    """Run the state through the nodes of a compiled spec graph (``graph.spec_graph`` or a
    body graph) in order; repeat nodes iterate their body graph, never unrolled."""
    for name in nx.topological_sort(graph):
        attrs = graph.nodes[name]
        node = attrs["node"]
        if isinstance(node, Repeat):
            for _ in range(node.times):
                state = propagate(attrs["body"], state, parameterization)
        elif isinstance(node, Act):
            state = _activation(node, state)
        elif isinstance(node, Dense | Conv):
            state = _linear(node, _realized(state), parameterization)
        elif isinstance(node, Residual | BatchNorm) and state.flattened:
            raise UnsupportedError(
                f"{node.path}: a {node.kind} right after a flatten is not supported",
                hint="put a dense layer between the flatten and it",
            )
        elif isinstance(node, Residual):
            state = _residual(node, attrs["body"], state, parameterization)
        elif isinstance(node, Pool | Flatten):
            state = _readout(node, _realized(state))
        elif isinstance(node, BatchNorm):
            state = _batch_norm(node, _realized(state))
        else:  # pragma: no cover - the loader admits no other kinds
            raise UnsupportedError(f"no kernel rule for {node!r}")
        _check_finite(state, node)
    return state


def _check_finite(state: KernelState, node: Node) -> None:
    for name in ("nngp", "ntk", "field_nngp", "field_ntk"):
        value = getattr(state, name)
        if value is None:
            continue
        finite = (
            np.isfinite(value).all() and np.abs(value).max() < OVERFLOW_GUARD
            if state.ctx.name == "float64"
            else all(state.ctx.isfinite(v) for v in value.ravel())
        )
        if not finite:
            raise TheoryError(
                f"{node.path}: the {name.split('_')[-1]} kernel overflowed float64",
                hint="the network is deep in the chaotic phase; use fewer layers or a smaller "
                "sigma_w2",
            )


# --- activations -------------------------------------------------------------------------


def _activation(node: Act, state: KernelState) -> KernelState:
    """φ of the current field (composed with a pending φ); evaluated lazily. A field whose
    mean μ is the same for every input and pixel (a batch norm's β) is the centred field
    with covariance K − μ² under x ↦ φ(x + μ)."""
    if state.phi is not None:
        phi = node.activation if state.phi.expr == X else node.activation.compose(state.phi)
        return replace(state, phi=phi)
    mean = np.ravel(state.mean)
    scale = 1 + max(abs(float(v)) for v in np.ravel(state.nngp)[:1]) if mean.size else 1
    if mean.size == 0 or all(abs(float(v)) <= 1e-12 * scale for v in mean):
        return replace(state, field_nngp=state.nngp, field_ntk=state.ntk, phi=node.activation)
    shift = mean[0]
    if any(abs(float(v - shift)) > 1e-12 * (1 + abs(float(shift))) for v in mean):
        raise UnsupportedError(
            f"{node.path}: the activation's input has a mean that differs between inputs (a "
            "residual sum with a nonlinear body), so the wide-limit rule here does not apply",
            hint="put a dense or conv layer (or a batch norm) before the activation",
        )
    exact = sp.Rational(float(shift)) if state.ctx.name == "float64" else sp.Float(shift)
    inner = Activation(f"x{float(shift):+.6g}", X + exact)
    shifted = node.activation.compose(inner)
    if shifted.kinks and closed_form(shifted.expr, shifted.expr, state.ctx) is None:
        raise UnsupportedError(
            f"{node.path}: a kinked activation ({node.activation.name}) of a field with mean "
            f"{float(shift):.6g} (a batch norm's beta) has no kernel rule here: the Gaussian "
            "engine integrates kinks at 0 only, and closed forms exist for relu and step",
            hint="use beta: 0 before this activation, or relu, or a smooth activation",
        )
    return replace(state, field_nngp=state.nngp - shift * shift, field_ntk=state.ntk,
                   phi=node.activation.compose(inner))  # fmt: skip


def _as_matrices(kernel: np.ndarray, mode: str) -> np.ndarray:
    """The kernel as a stack of symmetric matrices over (input[, pixel]) pairs:
    flat (1, m, m); full (1, m·n, m·n); diagonal (n, m, m), one per pixel."""
    m = kernel.shape[0]
    if mode == "flat":
        return kernel[None]
    n = int(np.prod(kernel.shape[2:])) if mode == "diagonal" else int(np.sqrt(kernel[0, 0].size))
    if mode == "full":
        return kernel.reshape(m, m, n, n).transpose(0, 2, 1, 3).reshape(1, m * n, m * n)
    return np.moveaxis(kernel.reshape(m, m, n), 2, 0)


def _from_matrices(stack: np.ndarray, like: np.ndarray, mode: str) -> np.ndarray:
    m = like.shape[0]
    if mode == "flat":
        return stack[0]
    if mode == "full":
        n = stack.shape[1] // m
        return stack[0].reshape(m, n, m, n).transpose(0, 2, 1, 3).reshape(like.shape)
    return np.moveaxis(stack, 0, 2).reshape(like.shape)


def _dual(f: Activation, g: Activation, state: KernelState, kernel: np.ndarray) -> np.ndarray:
    """E[f(u) g(v)] for every entry, Var u and Var v read off the diagonal: each symmetric
    matrix's upper triangle once (vectorised in float64; each distinct covariance once at
    high precision). f and g must be the same function (the kernels are symmetric)."""
    stack = _as_matrices(kernel, state.mode)
    size = stack.shape[1]
    rows, cols = np.triu_indices(size)
    var = np.diagonal(stack, axis1=1, axis2=2)
    q1, q2, cov = var[:, rows], var[:, cols], stack[:, rows, cols]
    ctx = state.ctx
    if ctx.name == "float64":
        bound = np.sqrt(q1 * q2)
        upper = expect(f, g, q1, np.clip(cov, -bound, bound), q2)
    else:
        cache: dict = {}
        upper = np.empty(cov.shape, dtype=object)
        with ctx.active():
            for index in np.ndindex(cov.shape):
                key = (q1[index], cov[index], q2[index])
                if key not in cache:
                    bound = ctx.sqrt(key[0] * key[2])
                    clipped = min(max(key[1], -bound), bound)
                    cache[key] = expect(f, g, key[0], clipped, key[2], ctx)
                upper[index] = cache[key]
    out = np.empty(stack.shape, dtype=upper.dtype)
    out[:, rows, cols] = upper
    out[:, cols, rows] = upper
    return _from_matrices(out, kernel, state.mode)


def _realized(state: KernelState) -> KernelState:
    """Apply a pending activation: second moments T(K), NTK Ṫ(K) ⊙ Θ, means E[φ(u)]."""
    if state.phi is None:
        return state
    phi, k = state.phi, state.field_nngp
    nngp = _dual(phi, phi, state, k)
    ntk = None
    if state.field_ntk is not None:
        d = phi.derivative()
        ntk = _dual(d, d, state, k) * state.field_ntk
    variances = _own_variances(k, state.mode, state.spatial)
    if phi.parity == -1:  # odd φ: E[φ(u)] = 0 exactly
        mean = np.zeros(variances.shape, dtype=variances.dtype)
    elif state.ctx.name == "float64":
        mean = expect1(phi, variances) if variances.size else variances
    else:
        with state.ctx.active():
            one = np.vectorize(lambda q: expect1(phi, q, state.ctx), otypes=[object])
            mean = one(variances)
    return replace(state, nngp=nngp, ntk=ntk, mean=np.asarray(mean), field_nngp=None,
                   field_ntk=None, phi=None)  # fmt: skip


def _own_variances(kernel: np.ndarray, mode: str, spatial: tuple[int, ...]) -> np.ndarray:
    """Var of each input (and pixel): shape (m,) or (m, *S)."""
    m = kernel.shape[0]
    diag = kernel[np.arange(m), np.arange(m)]
    if mode == "full":
        n = int(np.prod(spatial))
        flat = diag.reshape(m, n, n)
        return flat[:, np.arange(n), np.arange(n)].reshape(m, *spatial)
    return diag


# --- linear layers -----------------------------------------------------------------------


def _shift_sum(kernel: np.ndarray, taps, mode: str, spatial: tuple[int, ...]) -> np.ndarray:
    """Σ_β w_β X(α + β − c, α' + β − c) (full) or X(α + β − c) (diagonal), periodic, for
    taps (offsets, w_β) from ``conv_taps``."""
    d = len(spatial)
    axes = list(range(2, 2 + d)) + (list(range(2 + d, 2 + 2 * d)) if mode == "full" else [])
    out = np.zeros_like(kernel)
    for offsets, w in taps:
        if w != 0:
            out += w * np.roll(kernel, list(offsets) * (2 if mode == "full" else 1), axis=axes)
    return out


def _linear(node: Dense | Conv, state: KernelState, parameterization: str) -> KernelState:
    """Dense: xiao_bahri eq. 6; conv: xiao2018 eq. 2.3 and xiao_bahri eq. 31."""
    sw2, sb2 = node.sigma_w2, node.sigma_b2
    if isinstance(node, Dense):
        state = _collapse(state)
        if state.mode != "flat":
            raise UnsupportedError(f"{node.path}: dense after a spatial layer needs a flatten")
        mixed, plain, fan_in, channels = state.nngp, state.nngp, state.channels, node.width
        theta_mixed = None if state.ntk is None else state.ntk
    else:
        if state.mode == "flat":
            raise UnsupportedError(f"{node.path}: conv needs a spatial input")
        taps = conv_taps(node)
        mixed = _shift_sum(state.nngp, taps, state.mode, state.spatial)
        fan_in, channels = state.channels, node.channels
        theta_mixed = None
        if state.ntk is not None:
            theta_mixed = _shift_sum(state.ntk, taps, state.mode, state.spatial)
            if parameterization == "standard":
                ones = tuple((offsets, 1.0) for offsets, _ in taps)
                plain = _shift_sum(state.nngp, ones, state.mode, state.spatial)
    nngp = sw2 * mixed + sb2
    ntk = None
    if state.ntk is not None:
        if parameterization == "ntk":
            ntk = nngp + sw2 * theta_mixed
        else:
            ntk = fan_in * plain + 1.0 + sw2 * theta_mixed
    mean = np.zeros_like(state.mean)
    return replace(state, nngp=nngp, ntk=ntk, mean=mean, channels=channels)


# --- readouts, residual, batch norm --------------------------------------------------------


def _readout(node: Pool | Flatten, state: KernelState) -> KernelState:
    """xiao_bahri eq. 18. Pooling averages every pixel pair. Flattening keeps the same-pixel
    pairs (diagonal mode, ``flattened``) until a dense layer averages them (``_collapse``):
    a flattened feature (channel, pixel) has its pixel's kernel, so an activation in between
    acts on each pixel's kernel before the average, not on the average."""
    if state.mode == "flat" or state.flattened:
        if isinstance(node, Flatten):  # flattening flat features changes nothing
            return state
        raise UnsupportedError(f"{node.path}: {node.kind} needs a spatial input")
    n = int(np.prod(state.spatial))
    m = state.m
    if isinstance(node, Flatten):

        def same_pixel(k: np.ndarray | None) -> np.ndarray | None:
            if k is None or state.mode == "diagonal":
                return k
            return k.reshape(m, m, n, n)[:, :, np.arange(n), np.arange(n)].reshape(
                m, m, *state.spatial
            )

        return replace(state, nngp=same_pixel(state.nngp), ntk=same_pixel(state.ntk),
                       mode="diagonal", channels=state.channels * n, flattened=True)  # fmt: skip
    if state.mode != "full":
        raise UnsupportedError(
            f"{node.path}: pooling needs the full pixel-pixel kernel",
            hint="use the full spatial mode (the default)",
        )

    def pooled(k: np.ndarray | None) -> np.ndarray | None:
        return None if k is None else k.reshape(m, m, n * n).mean(axis=2)

    mean = state.mean.reshape(m, -1).mean(axis=1)
    return replace(state, nngp=pooled(state.nngp), ntk=pooled(state.ntk), mean=mean,
                   mode="flat", spatial=())  # fmt: skip


def _collapse(state: KernelState) -> KernelState:
    """The features of a flattened state as flat features: every kernel averaged over the
    pixels (eq. 18), after any pending activation acted on each pixel's kernel."""
    if not state.flattened:
        return state
    state = _realized(state)
    m = state.m

    def average(k: np.ndarray | None) -> np.ndarray | None:
        return None if k is None else k.reshape(m, m, -1).mean(axis=2)

    mean = state.mean.reshape(m, -1).mean(axis=1)
    return replace(state, nngp=average(state.nngp), ntk=average(state.ntk), mean=mean,
                   mode="flat", spatial=(), flattened=False)  # fmt: skip


def _outer_mean(a: np.ndarray, b: np.ndarray, mode: str, spatial) -> np.ndarray:
    """E[x_a] E[y_b] arranged like a kernel of the given mode."""
    m = a.shape[0]
    if mode == "flat":
        return np.outer(a, b)
    if mode == "full":
        n = int(np.prod(spatial))
        out = np.einsum("ap,bq->abpq", a.reshape(m, n), b.reshape(m, n))
        return out.reshape(m, m, *spatial, *spatial)
    return np.einsum("ap,bp->abp", a.reshape(m, -1), b.reshape(m, -1)).reshape(m, m, *spatial)


def _residual(
    node: Residual, body: nx.DiGraph, state: KernelState, parameterization: str
) -> KernelState:
    """y = x + s·b(x): K_y = K_x + s (m_x m_bᵀ + m_b m_xᵀ) + s² K_b, because the body's last
    weights make b_i independent of x_i in the wide limit, so E[x_i b_i] = m_x m_b. The NTK:
    gradients through the skip and the body, Θ_y = Θ_x + s² Θ_b with Θ_b propagated from Θ_x
    (its J_b Θ_x J_bᵀ part); the skip-body cross terms ⟨∂x_i, (J_b ∂x)_i⟩ average the diagonal
    of the body's Jacobian, which has mean zero for centred weights. Hence a weight layer is
    required in the body."""
    if not any(isinstance(n, Dense | Conv) for n in _walk(node.body)):
        raise UnsupportedError(
            f"{node.path}: a residual body needs a dense or conv layer for the wide-limit rule",
            hint="a weight-free body (e.g. only an activation) is not a residual block",
        )
    s = node.scale
    stream = _realized(state)
    body = _realized(propagate(body, stream, parameterization))
    if body.nngp.shape != stream.nngp.shape:
        raise UnsupportedError(f"{node.path}: the residual body changes the kernel's shape")
    # E[x_aα b_bβ] + E[b_aα x_bβ] = m_x[a,α] m_b[b,β] + m_b[a,α] m_x[b,β]
    cross = _outer_mean(stream.mean, body.mean, stream.mode, stream.spatial)
    cross += _outer_mean(body.mean, stream.mean, stream.mode, stream.spatial)
    nngp = stream.nngp + s * cross + s * s * body.nngp
    ntk = None if stream.ntk is None else stream.ntk + s * s * body.ntk
    mean = stream.mean + s * body.mean
    return replace(stream, nngp=nngp, ntk=ntk, mean=mean, channels=body.channels)


def _batch_norm(node: BatchNorm, state: KernelState) -> KernelState:
    """Batch norm over the m inputs (and pixels) in the wide limit (mean_field_batchnorm §3).
    Each channel's batch vector h ~ N(0, K) is centred (G, over the batch and pixels) and
    divided by its own batch standard deviation, so with N samples
    K_bn = γ² N E[z zᵀ/‖z‖²] + β², z ~ N(0, G K G) — exact for any batch (the engine's
    ``expect_normalized_outer``). For equicorrelated inputs it is γ² G/(tr G/N) + β²: unit
    variance and no correlation between distinct inputs at large N, Claims 6.1/6.3.
    NTK (approximation, stated): Θ_bn = γ² G Θ G / (tr(G K G)/N), i.e. the variance's own
    derivative and its fluctuations are ignored. An activation after it treats the output as
    Gaussian with mean β and covariance K_bn − β² (the paper's approximation, eqs. 56–57;
    each channel's batch vector really lies on a sphere, and the error falls like 1/N: ~10%
    at N = 5, ~1% at N = 60 in the tests). Spatial batch norm needs the full mode."""
    if state.mode == "diagonal":
        raise UnsupportedError(f"{node.path}: spatial batch norm needs the full kernel mode")
    if state.ctx.name != "float64":
        raise UnsupportedError(f"{node.path}: batch norm kernels are float64 only")
    m = state.m
    size = m * int(np.prod(state.spatial)) if state.spatial else m
    n = size // m

    def as_matrix(k: np.ndarray) -> np.ndarray:
        if state.mode == "flat":
            return k
        return k.reshape(m, m, n, n).transpose(0, 2, 1, 3).reshape(size, size)

    def back(k: np.ndarray) -> np.ndarray:
        if state.mode == "flat":
            return k
        return k.reshape(m, n, m, n).transpose(0, 2, 1, 3).reshape(state.nngp.shape)

    centre = np.eye(size) - 1.0 / size
    kernel = centre @ as_matrix(state.nngp) @ centre
    scale = np.trace(kernel) / size
    if scale <= 0:
        raise TheoryError(f"{node.path}: the batch has no variance to normalise")
    nngp = back(node.gamma**2 * size * expect_normalized_outer(kernel) + node.beta**2)
    ntk = None
    if state.ntk is not None:
        ntk = back(node.gamma**2 * centre @ as_matrix(state.ntk) @ centre / scale)
        state.notes.append(
            f"{node.path}: the NTK through batch norm ignores the derivative of the batch "
            "variance (approximation)"
        )
    mean = np.full_like(state.mean, node.beta)
    return replace(state, nngp=nngp, ntk=ntk, mean=mean)


# --- the whole network ------------------------------------------------------------------------


@dataclass
class NetworkKernels:
    nngp: np.ndarray
    ntk: np.ndarray | None
    parameterization: str
    mode: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.nngp.shape),
            "parameterization": self.parameterization,
            "mode": self.mode,
            "nngp_diagonal_mean": float(np.mean(np.diagonal(self.nngp, axis1=0, axis2=1))),
            "notes": list(self.notes),
        }


def network_kernels(
    spec: Spec,
    inputs: np.ndarray,
    ntk: bool = True,
    parameterization: str = "ntk",
    mode: str = "auto",
    digits: int | None = None,
    compiled: bool = False,
) -> NetworkKernels:
    """NNGP and NTK of the spec's output for the inputs (m, *input_shape), channels first.
    ``mode``: ``full`` pixel-pixel kernels, ``diagonal`` same-pixel only (enough when the
    spatial part ends in a flatten), ``auto`` picks diagonal when no pool or batch norm needs
    the full kernel and the spec ends flat. ``digits``: evaluate with mpmath at N significant
    digits (the arrays then hold mpf). In float64 a chain spec runs as one fused program
    (``kernel_program``); other specs, and programs whose result is not finite, run on the
    general engine below. ``compiled``: fuse the program with torch.compile (the first call
    per spec and input shape compiles, seconds; then small kernels run ~2x faster)."""
    if parameterization not in PARAMETERIZATIONS:
        raise UnsupportedError(f"parameterization must be one of {PARAMETERIZATIONS}")
    inputs = np.asarray(inputs, float)
    if inputs.shape[1:] != tuple(spec.input_shape):
        raise TheoryError(
            f"inputs of shape {inputs.shape} do not match the spec's input shape "
            f"{list(spec.input_shape)} (expected (m, {', '.join(map(str, spec.input_shape))}))"
        )
    if len(spec.input_shape) == 1:
        mode = "flat"
    elif mode == "auto":
        mode = "diagonal" if _diagonal_is_enough(spec) else "full"
    from workbench.precision import context

    ctx = context(digits)
    notes: list[str] = []
    if ctx.name == "float64":
        program = lower(spec, inputs.shape[0], mode, parameterization, ntk)
        if program is not None:
            result = _run_program(program, inputs, compiled, notes)
            if result is not None:
                return result
        elif compiled:
            notes.append("not compiled: only chain specs run as a fused program")
    elif compiled:
        notes.append("not compiled: high-precision kernels run on the general engine")
    state = initial_state(inputs, mode, ntk, ctx)
    state.notes.extend(notes)
    state = _collapse(_realized(propagate(spec_graph(spec), state, parameterization)))
    _check_psd({"nngp": state.nngp, "ntk": state.ntk}, state.m, state.mode, state.spatial)
    notes = list(dict.fromkeys(state.notes))  # a repeated block notes once
    return NetworkKernels(state.nngp, state.ntk, parameterization, mode, notes)


def _run_program(
    program: Program, inputs: np.ndarray, compiled: bool, notes: list[str]
) -> NetworkKernels | None:
    """The fused program's kernels, or None when they are not finite (zero variances, or an
    overflow deep in the chaotic phase: the general engine then handles it or names the
    node)."""
    start = initial_state(inputs, program.mode, False)
    if not (_own_variances(start.nngp, start.mode, start.spatial) > 0).all():
        return None  # zero-variance inputs (σ_w² > 0 keeps all later variances positive)
    first = pack(start.nngp)
    out = None
    if compiled:
        try:
            out = compiled_run(program, first.shape)(first)
        except Exception as error:  # noqa: BLE001 - no C++ compiler, unsupported platform, ...
            notes.append(f"not compiled: torch.compile failed ({type(error).__name__}: {error})")
    if out is None:
        with np.errstate(all="ignore"):
            out = run(program, first)
    kernels = {}
    for name, packed in zip(("nngp", "ntk"), out):
        if packed is None:
            kernels[name] = None
            continue
        if not np.abs(packed).max() < OVERFLOW_GUARD:  # also catches NaN
            return None
        kernels[name] = unpack(packed, program.m, program.mode if packed.ndim > 1 else "flat")
    spatial = program.spatial if kernels["nngp"].ndim > 2 else ()
    mode = program.mode if spatial else "flat"
    _check_psd(kernels, program.m, mode, spatial)
    return NetworkKernels(kernels["nngp"], kernels["ntk"], program.parameterization,
                          program.mode, notes)  # fmt: skip


def _check_psd(kernels: dict[str, np.ndarray | None], m: int, mode: str, spatial) -> None:
    """Each kernel over m inputs (× pixels in full mode; per pixel in diagonal mode) must be
    positive semi-definite: one batched eigenvalue call for all of them."""
    n = int(np.prod(spatial)) if spatial else 1
    names, blocks = [], []
    for name, kernel in kernels.items():
        if kernel is None:
            continue
        kernel = np.asarray(kernel, float)
        if mode == "diagonal":
            stack = np.moveaxis(kernel.reshape(m, m, n), 2, 0)
        elif mode == "full":
            stack = kernel.reshape(m, m, n, n).transpose(0, 2, 1, 3).reshape(1, m * n, m * n)
        else:
            stack = kernel[None]
        names += [name] * len(stack)
        blocks.append(stack)
    batch = np.concatenate(blocks)
    eig = np.linalg.eigvalsh((batch + np.swapaxes(batch, 1, 2)) / 2)
    floor = -1e-9 * np.maximum(np.abs(eig[:, -1]), 1e-300)
    bad = np.flatnonzero(eig[:, 0] < floor)
    if bad.size:
        raise TheoryError(
            f"the {names[bad[0]]} kernel is not positive semi-definite (eigenvalue "
            f"{eig[bad[0], 0]:.3g})",
            hint="this indicates a numerical problem; please report the spec",
        )


def _diagonal_is_enough(spec: Spec) -> bool:
    if len(spec.input_shape) == 1:
        return False
    kinds = {n.kind for n in _walk(spec.layers)}
    last_spatial = not any(k in kinds for k in ("flatten", "pool"))
    return not ({"pool", "bn"} & kinds) and not last_spatial


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(getattr(node, "body", ()))
