"""The one evaluator: NNGP kernel Σ/K and NTK Θ of m inputs through a compiled spec graph.

It walks the graph (``workbench.compile.graph``) and asks each node for its ``kernel`` rule
(``workbench.nodes.<kind>.kernel``: the science lives there); repeat nodes iterate their body
graph, never unrolled. It also owns what every rule shares: applying a pending activation
(the dual kernels T(K), Ṫ(K) from the Gaussian engine), collapsing flattened features, and the
finiteness guard. In float64 a chain spec runs as one fused program instead
(``kernel_program``, lowered from the same graph by the nodes' ``lower`` rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import networkx as nx
import numpy as np

from workbench.activations import Activation
from workbench.compile.graph import spec_graph
from workbench.errors import TheoryError, UnsupportedError
from workbench.gaussian import expect, expect1, expect_gram
from workbench.gaussian.affine_regime import Affine, affine_bound
from workbench.gaussian.gap import DEPTH_SAFE, GapMap, dual_gap, inner_product_gap
from workbench.gaussian.interpolant import DualInterpolant
from workbench.nodes.base import NodeBase, flat_nodes, has_weights, module_of, rule
from workbench.precision import F64, Context
from workbench.spec.model import Spec
from workbench.theory.kernel_program import (
    OVERFLOW_GUARD,
    Program,
    compiled_run,
    lower,
    overflow,
    pack,
    pair_indices,
    run_checked,
    smallest_one_minus_c,
    unpack,
)
from workbench.theory.state import KernelState

SETTLED = 32 * float(np.finfo(float).eps)  # variances this close (7e-15) count as one q
PARAMETERIZATIONS = ("ntk", "standard")
GENERAL_ENGINE_ONE_MINUS_C = (
    "one_minus_c from the kernel's entries: this spec runs on the general engine, which does "
    "not carry 1 - c, so it loses digits where c rounds to 1"
)

POOLED_ONE_MINUS_C = (
    "one_minus_c after the global-average pool is 1 - K_ab/sqrt(K_aa K_bb) of the pooled kernel "
    "(the carried gap is per pixel pair; pooling mixes them), so it loses digits where c "
    "rounds to 1; the kernels before the pool carry it"
)


def initial_state(inputs: np.ndarray, mode: str, want_ntk: bool, ctx: Context = F64) -> KernelState:
    """The inputs' own second moments: X of shape (m, C) or (m, C, *S), averaged over channels
    (the 1/fan_in of the first layer's weights). At high precision the arrays hold mpf."""
    with ctx.active():
        x = ctx.array(_finite_inputs(inputs))
        nngp, mode = input_moments(x, mode)
        mean = x.mean(axis=1)
    ntk = np.zeros_like(nngp) if want_ntk else None
    spatial = x.shape[2:]
    gap = None
    if mode == "flat" and ctx.fast_float64:  # the inputs' own gap, without cancellation
        gap = inner_product_gap(x, np.stack(_upper_pairs(x.shape[0]), axis=1))[0]
    return KernelState(nngp, ntk, mean, mode, tuple(spatial), x.shape[1], ctx=ctx, gap=gap)


def _finite_inputs(inputs: np.ndarray) -> np.ndarray:
    x = np.asarray(inputs, float)
    if not np.isfinite(x).all():
        raise TheoryError("inputs must be finite")
    return x


def input_moments(x: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    """X Xᵀ / C over channels, per pixel pair (full) or same pixel (diagonal), and the layout."""
    m, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    if not spatial:
        nngp = x @ x.T / channels
        mode = "flat"
    else:
        flat = x.reshape(m, channels, -1)
        if mode == "full":
            nngp = np.einsum("acp,bcq->abpq", flat, flat) / channels
            nngp = nngp.reshape(m, m, *spatial, *spatial)
        else:
            same = np.matmul(flat.transpose(2, 0, 1), flat.transpose(2, 1, 0))  # (pixels, m, m)
            nngp = np.moveaxis(same, 0, 2).reshape(m, m, *spatial) / channels
    return nngp, mode


class Evaluator:
    """Walks compiled graphs under one precision context and NTK parameterisation."""

    def __init__(self, parameterization: str = "ntk", progress: bool = False) -> None:
        if parameterization not in PARAMETERIZATIONS:
            raise UnsupportedError(f"parameterization must be one of {PARAMETERIZATIONS}")
        self.parameterization = parameterization
        self.progress = progress  # show a bar for long loops (repeat blocks)
        self._seen: dict = {}  # φ → the recent variances at which it was realized
        self._interpolants: dict = {}  # (φ, q) → (T, Ṫ) interpolants in the correlation
        self._gap_maps: dict = {}  # (φ, q) → the frozen s-map (gaussian.gap.GapMap)
        self._tape: list[list] | None = None  # while recording: where nested frames go
        self._realized: dict | None = None  # id(state) → (state, realized) of the last record
        self._settled_slopes: dict = {}  # (φ, q) → E[φ′(u)²] at a settled variance
        self._settled_means: dict = {}  # (φ, q) → E[φ(u)] at a settled variance
        self.learning = True  # whether revisited variances build interpolants
        # batch norm's statistics: over the batch of inputs, or ``population`` (the inputs
        # are representatives of a data distribution whose statistics are constants)
        self.normalization = "batch"

    def propagate(self, graph: nx.DiGraph, state: KernelState) -> KernelState:
        """Run the state through the graph's nodes in order, each by its own kernel rule (all
        arithmetic at the state's precision: mpf operations round to the active one). While
        ``record`` runs, every node's input and output state is kept (``TapeEntry``), with the
        frames of the bodies its rule propagated (a repeat's passes, a residual's body)."""
        frame: list[TapeEntry] | None = None
        if self._tape is not None:
            frame = []
            self._tape[-1].append(frame)
        with state.ctx.active():
            for name in nx.topological_sort(graph):
                attrs = graph.nodes[name]
                node = attrs["node"]
                if frame is None:
                    state = rule(node, "kernel")(node, state, self, attrs)
                else:
                    entry = TapeEntry(node, attrs, state)
                    frame.append(entry)
                    self._tape.append(entry.frames)
                    try:
                        state = rule(node, "kernel")(node, state, self, attrs)
                    finally:
                        self._tape.pop()
                    entry.out = state
                _check_finite(state, node)
        return state

    def record(self, graph: nx.DiGraph, state: KernelState) -> tuple[KernelState, list]:
        """``propagate`` keeping every node's states: (output state, the top frame). The
        realized states are kept too, for the walks over the tape, until the next record."""
        root: list = []
        self._tape = [root]
        self._realized = {}
        try:
            out = self.propagate(graph, state)
        finally:
            self._tape = None
        return out, root[0]

    def derivative_dual(self, state: KernelState) -> np.ndarray:
        """Ṫ(K)_ab = E[φ′(u_a) φ′(u_b)] of the pending activation on its field (the backward
        multiplier of xiao2018 eq. 2.15 and the NTK's), by the same routes as ``realized``."""
        phi, k = state.phi, state.field_nngp
        variances = state.own_variances(k)
        fast = self.interpolants_at(phi, variances, state.ctx)
        if fast is not None:
            return fast[1](_correlations(state, k, variances))
        return _dual(phi.derivative(), state, k)

    def derivative_moments(self, state: KernelState) -> np.ndarray:
        """E[φ′(u_a)²] of the pending activation at every input (and pixel): the diagonal of
        ``derivative_dual`` (c = 1 exactly), one Gaussian integral per distinct variance."""
        d = state.phi.derivative()
        variances = state.own_variances(state.field_nngp)
        ctx = state.ctx
        fast = self.interpolants_at(state.phi, variances, ctx)
        if fast is not None:  # every variance settled at q: Ṫ(1), once per (φ, q)
            key = (state.phi, fast[2])
            if key not in self._settled_slopes:
                self._settled_slopes[key] = float(fast[1](np.ones(1))[0])
            return np.full(variances.shape, self._settled_slopes[key])
        if ctx.fast_float64:
            return expect(d, d, variances, variances, variances, ctx)
        return ctx.elementwise(lambda q: expect(d, d, q, q, q, ctx), variances)

    def realized(self, state: KernelState) -> KernelState:
        """Apply a pending activation: second moments T(K), NTK Ṫ(K) ⊙ Θ, means E[φ(u)]. While
        recording, a state realized once (by the next node) is returned again without
        recomputing (the walks over the tape ask for the same states)."""
        if state.phi is None:
            return state
        if self._realized is not None:
            found = self._realized.get(id(state))
            if found is not None and found[0] is state:
                return found[1]
            out = self._realize(state)
            self._realized[id(state)] = (state, out)
            return out
        return self._realize(state)

    def _realize(self, state: KernelState) -> KernelState:
        phi, k = state.phi, state.field_nngp
        variances = state.own_variances(k)
        affine = _affine_at(phi, variances, state.ctx)
        if affine is not None:
            return self._realize_affine(state, affine, variances)
        fast = self.interpolants_at(phi, variances, state.ctx)
        if fast is not None:  # every variance settled at q: T, Ṫ as functions of K/q
            t, t_dot, _ = fast
            c = _correlations(state, k, variances)
            nngp = t(c)
            ntk = None if state.field_ntk is None else t_dot(c) * state.field_ntk
        else:
            nngp = _dual(phi, state, k)
            ntk = None
            if state.field_ntk is not None:
                ntk = _dual(phi.derivative(), state, k) * state.field_ntk
        gap = self._realized_gap(phi, state, k, fast)
        if phi.parity == -1:  # odd φ: E[φ(u)] = 0 exactly
            mean = np.zeros(variances.shape, dtype=variances.dtype)
        elif not variances.size:
            mean = variances
        elif fast is not None:  # every variance settled at q: E[φ(u)] once per (φ, q)
            mean = np.full(variances.shape, self.settled_mean(phi, fast[2], state.ctx))
        elif state.ctx.fast_float64:
            mean = expect1(phi, np.asarray(variances, float))
        else:
            mean = state.ctx.elementwise(lambda q: expect1(phi, q, state.ctx), variances)
        return state.replace(nngp=nngp, ntk=ntk, mean=np.asarray(mean), field_nngp=None,
                             field_ntk=None, phi=None, gap=gap)  # fmt: skip

    def _realize_affine(
        self, state: KernelState, affine: Affine, variances: np.ndarray
    ) -> KernelState:
        """φ applied where it is affine to rounding on every variance (gaussian.affine_regime):
        T = φ(0)² + φ′(0)² K, Ṫ = φ′(0)², E[φ] = φ(0), exactly."""
        k, s2 = state.field_nngp, affine.slope**2
        ntk = None if state.field_ntk is None else s2 * state.field_ntk
        gap = None
        if state.gap is not None and state.mode == "flat":
            rows, cols = _upper_pairs(state.m)
            q = np.diagonal(k).astype(float)
            gap = affine.pairs_gap(q[rows], q[cols], state.gap)
        mean = np.full(variances.shape, affine.value)
        return state.replace(nngp=affine.value**2 + s2 * k, ntk=ntk, mean=mean,
                             field_nngp=None, field_ntk=None, phi=None, gap=gap)  # fmt: skip

    def _realized_gap(self, phi: Activation, state: KernelState, k: np.ndarray, fast) -> Any:
        """The gap of T(K) from the field's (flat float64 states that carry one): the frozen
        s-map where every variance has settled, else ``dual_gap``; None where the only route
        is a difference of moments (nothing depth-safe to carry)."""
        if state.gap is None or state.mode != "flat" or not state.ctx.fast_float64:
            return None
        rows, cols = _upper_pairs(state.m)
        q = np.diagonal(k).astype(float)
        if not (q > 0).all():  # c of a zero-variance field is undefined
            return None
        s = state.gap / (np.sqrt(q[rows]) * np.sqrt(q[cols]))  # the product may underflow
        if fast is not None:
            gap_map = self.frozen_gap_map(phi, fast[2])
            if gap_map is None:
                return None
            pairs_gap = gap_map(s)
        else:
            found = dual_gap(phi, q, np.stack([rows, cols], axis=1), s)
            if not found.depth_safe:
                return None
            pairs_gap = found.gap
        return pairs_gap

    def frozen_gap_map(self, phi: Activation, q: float) -> GapMap | None:
        """The frozen s-map of φ at a settled variance q (once per (φ, q)); None where it
        did not converge or is not depth-safe (a difference of moments)."""
        key = (phi, q)
        if key not in self._gap_maps:
            self._gap_maps[key] = GapMap(phi, q)
        gap_map = self._gap_maps[key]
        return gap_map if gap_map.ok and gap_map.representation in DEPTH_SAFE else None

    def settled_mean(self, phi: Activation, q: float, ctx: Context) -> float:
        """E[φ(u)] at a settled variance q (once per (φ, q))."""
        key = (phi, q)
        if key not in self._settled_means:
            self._settled_means[key] = float(expect1(phi, q, ctx))
        return self._settled_means[key]

    def interpolants_at(self, phi: Activation, variances: np.ndarray, ctx: Context):
        """(T, Ṫ, q) when every variance equals one q (to 7e-15) at which φ has been
        realized before: deep in a network the variances settle on their fixed point while
        the correlations still move, and the dual kernels at that q become Chebyshev
        interpolants in θ = arccos c (``DualInterpolant``, 1e-14 of their scale), so a layer
        costs a few vector operations instead of a quadrature per entry. None otherwise.
        With ``learning`` off (a backward pass revisiting recorded states) it only uses
        interpolants built before."""
        if not ctx.fast_float64 or not variances.size:
            return None
        q = float(variances.flat[0])
        if not q > 0 or np.abs(variances - q).max() > SETTLED * q:
            return None
        seen = self._seen.setdefault(phi, [])
        match = next((v for v in seen if abs(v - q) <= SETTLED * q), None)
        if match is None:
            if self.learning:
                seen[:] = [*seen[-15:], q]
            return None
        key = (phi, match)
        if key not in self._interpolants:
            if not self.learning:
                return None
            d = phi.derivative()
            pair = DualInterpolant(phi, phi, match), DualInterpolant(d, d, match)
            self._interpolants[key] = pair if all(p.ok for p in pair) else None
        found = self._interpolants[key]
        return None if found is None else (*found, match)

    def flat(self, state: KernelState) -> KernelState:
        """Realized features as flat features: flattened features' kernels averaged over the
        pixels (xiao_bahri eq. 18), after any pending activation acted on each pixel's kernel."""
        state = self.realized(state)
        if not state.flattened:
            return state
        mean = state.mean.reshape(state.m, -1).mean(axis=1)
        return state.replace(nngp=state.pixel_average(state.nngp),
                             ntk=state.pixel_average(state.ntk), mean=mean, mode="flat",
                             spatial=(), flattened=False)  # fmt: skip


@dataclass(eq=False)
class TapeEntry:
    """One node's visit in a recorded forward pass: its input state, its output state, the
    frames its rule propagated (one per repeat pass, or a residual's body) and a cache for
    what the backward pass computes from these states (reused by repeated passes)."""

    node: NodeBase
    attrs: dict
    inp: KernelState
    out: KernelState | None = None
    frames: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)


def weight_visits(frame: list[TapeEntry], suffix: str = "") -> Iterator[tuple[str, TapeEntry]]:
    """Every weight node's visit in a recorded frame, in network order, labelled as the
    simulator labels its layer: the spec path, then ``#i`` per pass of each enclosing repeat
    (passes after an exact forward fixed point share the last recorded frame)."""
    for entry in frame:
        if getattr(module_of(entry.node), "UNROLLS", False):
            last = len(entry.frames) - 1
            for i in range(entry.node.times):
                yield from weight_visits(entry.frames[min(i, last)], f"{suffix}#{i}")
            continue
        for body in entry.frames:
            yield from weight_visits(body, suffix)
        if has_weights(entry.node):
            yield entry.node.path + suffix, entry


def unit_kernel(state: KernelState) -> np.ndarray:
    """The m × m kernel per unit of a layer, (1/(C·S)) Σ_{c,α} h_aα h_bα: its same-pixel
    kernels averaged over the positions (the simulator's ``probes.layer_kernels``)."""
    k = state.same_pixel(state.nngp).reshape(state.m, state.m, -1)
    return k.sum(axis=2) / state.ctx.num(k.shape[2])


def _correlations(state: KernelState, k: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """K_ab/√(K_aa K_bb) in the kernel's layout: exactly 1 for an entry with itself. Dividing
    by the settled q instead leaves those a rounding below 1, where duals with a kink in φ′
    (relu's Ṫ = (π − arccos c)/2π) have infinite slope: 1e-16 in c became 5e-9 in E[φ′²]."""
    root = np.sqrt(variances)
    return np.where(_self_pairs(state.mode, k.shape), 1.0, k / state.outer_mean(root, root))


@lru_cache(maxsize=16)
def _self_pairs(mode: str, shape: tuple[int, ...]) -> np.ndarray:
    """Which kernel entries pair an (input, pixel) with itself."""
    m = shape[0]
    same = np.eye(m, dtype=bool)
    if mode == "full":
        pixels = int(np.prod(shape[2 : 2 + (len(shape) - 2) // 2]))
        return (same[:, :, None, None] & np.eye(pixels, dtype=bool)[None, None]).reshape(shape)
    return np.broadcast_to(same.reshape(m, m, *[1] * (len(shape) - 2)), shape)


@lru_cache(maxsize=16)
def _upper_pairs(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pairs a < b."""
    return np.triu_indices(m, 1)


def _check_finite(state: KernelState, node: NodeBase) -> None:
    for name in ("nngp", "ntk", "field_nngp", "field_ntk"):
        value = getattr(state, name)
        if value is None:
            continue
        if not state.ctx.all_finite(value, OVERFLOW_GUARD):
            raise overflow(f"{node.path}: the {name.split('_')[-1]} kernel")


def _affine_at(phi: Activation, variances: np.ndarray, ctx: Context) -> Affine | None:
    """φ's affine regime where every variance lies in it (float64 only)."""
    if not ctx.fast_float64 or not variances.size:
        return None
    affine = affine_bound(phi)
    if affine is None or not np.asarray(variances, float).max() <= affine.bound:
        return None
    return affine


def _dual(f: Activation, state: KernelState, kernel: np.ndarray) -> np.ndarray:
    """E[f(u) f(v)] for every entry of the kernel (the Gaussian engine's ``expect_gram`` on
    the state's matrices: per pixel pair, or per pixel)."""
    return state.from_matrices(expect_gram(f, state.as_matrices(kernel), state.ctx))


@dataclass
class NetworkKernels:
    """The output kernels; ``one_minus_c``: 1 − c_ab of a flat output's NNGP, carried
    depth-safely where the program could (else from the kernel, said in ``notes``)."""

    nngp: np.ndarray
    ntk: np.ndarray | None
    parameterization: str
    mode: str
    notes: list[str] = field(default_factory=list)
    one_minus_c: np.ndarray | None = None

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
    progress: bool = False,
) -> NetworkKernels:
    """NNGP and NTK of the spec's output for the inputs (m, *input_shape), channels first.
    ``mode``: ``full`` pixel-pixel kernels, ``diagonal`` same-pixel only (enough when the
    spatial part ends in a flatten), ``auto`` picks diagonal when no pool or batch norm needs
    the full kernel and the spec ends flat. ``digits``: evaluate with mpmath at N significant
    digits (the arrays then hold mpf). In float64 a chain spec runs as one fused program
    (``kernel_program``); other specs, and programs whose result is not finite, run on the
    general engine below. ``compiled``: fuse a same-pixel (flatten-readout) program with
    torch.compile (the first call per spec and input shape compiles, seconds; then a 20-layer
    CNN-F runs ~1.1x faster). Pixel-pair programs (pool readouts) and flat ones stay eager, which
    is faster there (CNN-P: 8.3 ms eager, 10.4 compiled; ``FLAT_NOT_COMPILED``)."""
    evaluator = Evaluator(parameterization, progress)
    inputs, mode = checked_inputs(spec, inputs, mode)
    from workbench.precision import context

    ctx = context(digits)
    notes: list[str] = []
    if ctx.fast_float64:
        program = lower(spec, inputs.shape[0], mode, parameterization, ntk)
        if program is not None and compiled and program.mode == "full":
            notes.append("not compiled: pixel-pair kernels run faster eagerly")
            compiled = False
        elif program is not None and compiled and program.mode == "flat":
            notes.append(FLAT_NOT_COMPILED)
            compiled = False
        if program is not None:
            result = _run_program(program, inputs, compiled, notes)
            if result is not None:
                return result
        elif compiled:
            notes.append("not compiled: only chain specs run as a fused program")
    elif compiled:
        notes.append("not compiled: high-precision kernels run on the general engine")
    state = initial_state(inputs, mode, ntk, ctx).replace(notes=tuple(notes))
    state = evaluator.propagate(spec_graph(spec), state)
    with ctx.active():
        state = evaluator.flat(state)
    _check_psd({"nngp": state.nngp, "ntk": state.ntk}, state.m, state.mode, state.spatial)
    notes = list(state.notes)
    one_minus_c = None
    if state.mode == "flat" and state.gap is not None:
        root = np.sqrt(np.diagonal(state.nngp).astype(float))
        if not (root > 0).all():
            notes.append(ZERO_VARIANCE_ONE_MINUS_C)
            return NetworkKernels(state.nngp, state.ntk, parameterization, mode, notes, None)
        rows, cols = _upper_pairs(state.m)
        one_minus_c = np.zeros((state.m, state.m))
        one_minus_c[rows, cols] = one_minus_c[cols, rows] = state.gap / (root[rows] * root[cols])
    elif state.mode == "flat":
        with ctx.active():
            root = np.array([ctx.sqrt(v) for v in np.diagonal(state.nngp)], dtype=ctx.dtype)
            with np.errstate(invalid="ignore", divide="ignore"):
                one_minus_c = 1 - state.nngp / np.outer(root, root)
            np.fill_diagonal(one_minus_c, 0)
        if any(v == 0 for v in root):
            notes.append("one_minus_c is NaN for outputs of zero variance (c is undefined)")
        if ctx.fast_float64:
            notes.append(GENERAL_ENGINE_ONE_MINUS_C)
    return NetworkKernels(state.nngp, state.ntk, parameterization, mode, notes, one_minus_c)


ZERO_VARIANCE_ONE_MINUS_C = "1 - c is undefined: an input's output variance is 0 (underflow)"
FLAT_NOT_COMPILED = (
    "not compiled: flat programs run faster eagerly (FC erf, 100 layers, 256 inputs: 45 ms eager, "
    "67 ms compiled after a two-minute compile)"
)


def checked_inputs(spec: Spec, inputs: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    """The inputs (m, *input_shape) as float64, and the kernel layout: ``flat`` for flat
    inputs; ``auto`` picks ``diagonal`` where same-pixel kernels suffice, else ``full``."""
    inputs = np.asarray(inputs, float)
    if inputs.ndim < 2 or inputs.shape[1:] != tuple(spec.input_shape):
        raise TheoryError(
            f"inputs of shape {inputs.shape} do not match the spec's input shape "
            f"{list(spec.input_shape)} (expected (m, {', '.join(map(str, spec.input_shape))}))"
        )
    if len(spec.input_shape) == 1:
        return inputs, "flat"
    if mode == "auto":
        mode = "diagonal" if _diagonal_is_enough(spec) else "full"
    return inputs, mode


def _run_program(
    program: Program, inputs: np.ndarray, compiled: bool, notes: list[str]
) -> NetworkKernels | None:
    """The fused program's kernels, or None for zero-variance inputs (the general engine's
    rules handle those). An overflow deep in the chaotic phase is a TheoryError: the eager
    run names the repeat block where it happened; nothing is recomputed elsewhere."""
    x = _finite_inputs(inputs)
    first = packed_input_moments(x, program.mode)
    own = first[pair_indices(program.m)[2]].reshape(program.m, -1)
    if not (own > 0).any(axis=1).all():  # an input's kernel is 0 exactly where its variances are
        return None  # zero-variance inputs (σ_w² > 0 keeps all later variances positive)
    gap0 = partial(packed_input_gap, x, program.mode)  # made only where the gap rides
    out = None
    if compiled:
        try:
            out = depth_safe_run(program, first, gap0, notes, compiled=True)
        except Exception as error:  # noqa: BLE001 - no C++ compiler, unsupported platform, ...
            notes.append(f"not compiled: torch.compile failed ({type(error).__name__}: {error})")
    if out is None:
        with np.errstate(all="ignore"):
            out = depth_safe_run(program, first, gap0, notes)
    kernels = {}
    for name, packed in zip(("nngp", "ntk"), out[:2]):
        if packed is None:
            kernels[name] = None
            continue
        if not np.abs(packed).max() < OVERFLOW_GUARD:  # also catches NaN
            raise overflow(
                f"the {name} kernel of the fused program",
                "(compiled runs are checked only at the end)" if compiled else "",
            )
        kernels[name] = unpack(packed, program.m, program.mode if packed.ndim > 1 else "flat")
    spatial = program.spatial if kernels["nngp"].ndim > 2 else ()
    mode = program.mode if spatial else "flat"
    _check_psd(kernels, program.m, mode, spatial)
    one_minus_c = None
    root = np.sqrt(np.diagonal(kernels["nngp"])) if mode == "flat" else None
    if root is not None and not (root > 0).all():
        notes.append(ZERO_VARIANCE_ONE_MINUS_C)
    elif root is not None:
        if out[2] is not None:
            one_minus_c = unpack(out[2], program.m, "flat") / root[:, None] / root[None, :]
            if any(getattr(step, "pool", False) for step in program.steps):
                notes.append(POOLED_ONE_MINUS_C)
        else:  # divided by each root in turn: root_a·root_b overflows past q ~ 1e154
            one_minus_c = 1 - kernels["nngp"] / root[:, None] / root[None, :]
            if not program.gap:  # (else depth_safe_run said why)
                notes.append("one_minus_c from the kernel's entries (the fused program carries "
                             "1 - c for relu and linear activations only)")  # fmt: skip
        np.fill_diagonal(one_minus_c, 0.0)
    return NetworkKernels(kernels["nngp"], kernels["ntk"], program.parameterization,
                          program.mode, notes, one_minus_c)  # fmt: skip


def depth_safe_run(
    program: Program,
    first: np.ndarray,
    gap0: Callable[[], np.ndarray],
    notes: list[str],
    compiled: bool = False,
) -> tuple:
    """``run``, carrying the gap row only where it is needed: a program of L relu or linear
    layers runs without it when no pair of (input, pixel)s comes within NEEDS_GAP_PER_LAYER·L
    of c = 1 — before the readout and at the output (relu's c only grows with depth; pixel
    vectors of the inputs nearly parallel by chance are mixed apart by the first conv), and
    for flat inputs at the inputs too — where the entries themselves keep 1 − c to 1e-10
    relative (rounding grows like L·ε, relative to 1 − c; measured 30-50x below that bound)
    and the NTK's angles to √L·2e-14; else (and when unsure) it runs with it. Every kernel
    is computed once unless the cheap run shows it came too near (then twice: ~1.3x the
    depth-safe run). ``gap0`` makes the inputs' packed gap; ``compiled``: each run through
    torch.compile (``compiled_run``)."""

    def runner(p: Program) -> tuple[tuple, float | None]:
        """The outputs of ``p`` and the smallest 1 − c its readout read (None: none)."""
        if compiled:
            *out, smallest = compiled_run(p, first.shape)(first, gap0() if p.gap else None)
            return tuple(out), None if smallest is None else float(smallest)
        out, smallest = run_checked(p, first, gap0() if p.gap else None)
        return out, None if smallest is None else float(smallest)

    if not program.gap:
        return runner(program)[0]
    needed = NEEDS_GAP_PER_LAYER * program.activation_passes
    spatial = program.spatial
    if not spatial and smallest_one_minus_c(first, program.m, "flat", ()) < needed:
        return runner(program)[0]  # nearly parallel inputs: the plain run would not do
    out, before = runner(program.without_gap())
    after_spatial = () if before is not None else spatial
    after = float(smallest_one_minus_c(out[0], program.m, program.mode, after_spatial))
    if min(after, np.inf if before is None else before) < needed:
        return runner(program)[0]
    notes.append(
        f"one_minus_c from the kernel's entries: no pair came within {needed:.2g} of c = 1 "
        "(so they keep it to 1e-10 relative), so the depth-safe gap was not carried"
    )
    return out


NEEDS_GAP_PER_LAYER = 3.3e-6  # 3Lε/(1 − c) ≤ 1e-10 (see depth_safe_run)


def packed_input_moments(x: np.ndarray, mode: str) -> np.ndarray:
    """``input_moments`` packed like the programs' state (pairs a ≤ b first); same-pixel
    moments without the (m, m, pixels) array (the same products and sums: equal values)."""
    m, channels = x.shape[:2]
    if x.ndim == 2 or mode == "full":
        return pack(input_moments(x, mode)[0])
    rows, cols, _ = pair_indices(m)
    flat = x.reshape(m, channels, -1)
    same = np.matmul(flat.transpose(2, 0, 1), flat.transpose(2, 1, 0))  # (pixels, m, m)
    packed = same.reshape(len(same), m * m).take(rows * m + cols, axis=1)
    return (np.ascontiguousarray(packed.T) / channels).reshape(len(rows), *x.shape[2:])


def packed_input_gap(x: np.ndarray, mode: str) -> np.ndarray:
    """The inputs' gap √(K_aa K_bb) − K_ab packed like their kernel (``input_moments``): per
    pair a ≤ b, and per pixel pair (full) or pixel (diagonal), from the channel vectors at
    those pixels without cancellation (``gaussian.gap.inner_product_gap``)."""
    m, channels = x.shape[:2]
    rows, cols, _ = pair_indices(m)
    if x.ndim == 2:
        return inner_product_gap(x, np.stack([rows, cols], axis=1))[0]
    spatial = x.shape[2:]
    n = int(np.prod(spatial))
    vectors = x.reshape(m, channels, n).transpose(0, 2, 1).reshape(m * n, channels)
    pixel = np.arange(n)
    if mode == "full":
        first = rows[:, None, None] * n + pixel[None, :, None]
        second = cols[:, None, None] * n + pixel[None, None, :]
        first, second = np.broadcast_arrays(first, second)
        shape = (len(rows), *spatial, *spatial)
    else:
        first, second = rows[:, None] * n + pixel, cols[:, None] * n + pixel
        shape = (len(rows), *spatial)
    pairs = np.stack([first.ravel(), second.ravel()], axis=1)
    return inner_product_gap(vectors, pairs)[0].reshape(shape)


def _check_psd(kernels: dict[str, np.ndarray | None], m: int, mode: str, spatial) -> None:
    """Each kernel over m inputs (× pixels in full mode; per pixel in diagonal mode) must be
    positive semi-definite: one batched eigenvalue call for all of them."""
    n = int(np.prod(spatial)) if spatial else 1
    names, blocks = [], []
    for name, kernel in kernels.items():
        if kernel is None:
            continue
        if kernel.dtype == object and kernel.size:  # high precision: may exceed float64
            largest = max(abs(v) for v in kernel.flat)
            kernel = kernel / largest if largest else kernel
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
    batch = (batch + np.swapaxes(batch, 1, 2)) / 2
    trace = np.einsum("bii->b", batch)
    try:  # PD after a shift of 1e-9 trace ≥ 1e-9 λ_max: nothing below the floor (fast path)
        np.linalg.cholesky(batch + (1e-9 * np.abs(trace))[:, None, None] * np.eye(batch.shape[1]))
        return
    except np.linalg.LinAlgError:
        pass
    eig = np.linalg.eigvalsh(batch)
    floor = -1e-9 * np.maximum(np.abs(eig[:, -1]), 1e-300)
    bad = np.flatnonzero(eig[:, 0] < floor)
    if bad.size:
        raise TheoryError(
            f"the {names[bad[0]]} kernel is not positive semi-definite (eigenvalue "
            f"{eig[bad[0], 0]:.3g})",
            hint="this indicates a numerical problem; please report the spec",
        )


@lru_cache(maxsize=64)
def _diagonal_is_enough(spec: Spec) -> bool:
    """Same-pixel kernels suffice when the spatial part ends in a readout and no node needs
    pixel pairs (each kind declares ``NEEDS_PIXEL_PAIRS`` and ``READOUT``)."""
    kinds = [module_of(n) for n in flat_nodes(spec.layers)]
    needs_pairs = any(getattr(k, "NEEDS_PIXEL_PAIRS", False) for k in kinds)
    return any(getattr(k, "READOUT", False) for k in kinds) and not needs_pairs


def layer_kernels_theory(spec: Spec, x: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Every weight layer's per-unit kernel (m × m) in the wide limit, labelled as the
    simulator labels its layers: a recorded float64 pass of the evaluator."""
    x, mode = checked_inputs(spec, x, "auto")
    ev = Evaluator("ntk")
    with F64.active():
        _, frame = ev.record(spec_graph(spec), initial_state(x, mode, False, F64))
        visits = list(weight_visits(frame))
        kernels = np.array([unit_kernel(entry.out) for _, entry in visits], dtype=float)
    return [label for label, _ in visits], kernels
