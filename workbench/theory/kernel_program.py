"""The kernel recursion of a chain spec lowered to one fused float64 program.

A chain spec is built from dense and conv layers, activations of the relu, erf or linear
family (each right after a weight layer), global-average pooling, flatten and repeat blocks.
For such a spec the NNGP/NTK recursion (xiao_bahri eqs. 6, 18 and 31; xiao2018 eq. 2.3) is
lowered once to a tuple of steps and run on packed arrays: only the input pairs a ≤ b are
kept (the kernels are symmetric), as (P,), (P, *S) or (P, *S, *S) for flat, same-pixel
(``diagonal``) and ``full`` pixel-pixel kernels, P = m(m+1)/2. Each activation's NNGP and NTK
dual kernels share their correlation terms (``closed_forms.joint_dual``). Programs of relu
and linear activations carry a third row, the gap G = √(K_aa K_bb) − K_ab of every entry
(1 − c without cancellation: dense and conv layers add their Cauchy–Schwarz gap by Lagrange's
identity, relu takes its angle from G; a global-average pool forms it from its entries). The
same steps run eagerly on reused buffers (``run``) or, bound without buffers, through
torch.compile (``compiled_run``). Any other spec lowers to None and is left to the general
engine (``evaluate``), which also serves as the independent check of this program in the
tests."""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import product
from typing import Any

import networkx as nx
import numpy as np

from workbench.compile.graph import spec_graph
from workbench.errors import TheoryError
from workbench.gaussian.closed_forms import unchanged
from workbench.nodes.base import has_rule, rule
from workbench.spec.model import Spec


@dataclass(frozen=True)
class Linear:
    """Dense (``shifts`` empty) or circular conv: Σ_β v_β X(α + β, α' + β)."""

    sigma_w2: float
    sigma_b2: float
    fan_in: int
    shifts: tuple[tuple[tuple[int, ...], float], ...] = ()


@dataclass(frozen=True)
class Activate:
    # closed_forms.joint_dual of the activation (cached, so equal φ give equal steps); None
    # where φ has no closed form (``settled_loop`` freezes its dual at a settled variance)
    dual: Any
    expr: Any = None  # the activation's sympy expression (for its depth-safe gap)
    activation: Any = None  # the Activation itself


@dataclass(frozen=True)
class Readout:
    pool: bool  # global average pool; else flatten


@dataclass(frozen=True)
class Loop:
    times: int
    body: tuple
    path: str = ""  # the repeat node's spec path (named when its kernel overflows)


@dataclass(frozen=True)
class Program:
    steps: tuple
    m: int
    mode: str  # flat | diagonal | full
    spatial: tuple[int, ...]
    parameterization: str
    ntk: bool
    # carry G = √(K_aa K_bb) − K_ab (per input and pixel pair) as a row of its own: programs
    # of relu and linear activations, where the arc-cosine kernel's angle needs it near c = 1
    # (erf's arcsine kernels are accurate there without it, and its gap rules would cost ~8x
    # the program)
    gap: bool = False

    @property
    def rows(self) -> int:
        """Rows of the state: K, then Θ (with the NTK), then G (with the gap)."""
        return 1 + self.ntk + self.gap

    def __hash__(self) -> int:
        """Hashed once: programs key the per-thread caches of bound steps on every run."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            fields = (self.steps, self.m, self.mode, self.spatial, self.parameterization)
            cached = hash((*fields, self.ntk, self.gap))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict:
        """Pickled without the cached hash (string hashes differ between processes) and the
        cached variant."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_plain")}

    def without_gap(self) -> Program:
        """This program without the gap row, the same object every time (the bound-steps
        caches compare programs: a fresh equal one would cost a deep comparison per run)."""
        plain = self.__dict__.get("_plain")
        if plain is None:
            plain = self if not self.gap else replace(self, gap=False)
            object.__setattr__(self, "_plain", plain)
        return plain

    @property
    def activation_passes(self) -> int:
        """How many activation layers the program applies (each pass of a Loop counted)."""
        found = self.__dict__.get("_passes")
        if found is None:
            found = activation_passes(self.steps)
            object.__setattr__(self, "_passes", found)
        return found


@lru_cache(maxsize=64)
def lower(spec: Spec, m: int, mode: str, parameterization: str, ntk: bool) -> Program | None:
    """The recursion of the spec's compiled graph as a program, or None when the spec is not
    a chain spec. Fan-ins and spatial shapes come from the graph's shape inference."""
    spatial = tuple(spec.input_shape[1:])
    if mode == "full" and len(spatial) > 2 or mode == "flat" and spatial:
        return None
    steps, last = lower_graph(spec_graph(spec), "input", mode)
    if steps is None or last == "input" or any(a.dual is None for a in _activations(steps)):
        return None
    gap = all(
        step.dual.pair_from_gap is not None or _is_linear(step) for step in _activations(steps)
    )
    return Program(tuple(steps), m, mode, spatial, parameterization, ntk, gap)


def _activations(steps) -> list[Activate]:
    found = []
    for step in steps:
        if isinstance(step, Loop):
            found += _activations(step.body)
        elif isinstance(step, Activate):
            found.append(step)
    return found


def _is_linear(step: Activate) -> bool:
    from workbench.gaussian.closed_forms import match_family

    family = match_family(step.expr)
    return family is not None and family.form == "linear"


def lower_graph(graph: nx.DiGraph, last: str, mode: str) -> tuple[list | None, str]:
    """Steps for the graph's nodes in order, each from its node's ``lower`` rule (None when a
    node has none or declines); ``last`` is the kind of step before them (an activation needs
    a weight layer right before it, so that its input is a centred field)."""
    steps: list = []
    for name in nx.topological_sort(graph):
        attrs = graph.nodes[name]
        node = attrs["node"]
        if not has_rule(node, "lower"):
            return None, last
        lowered, last = rule(node, "lower")(node, attrs, last, mode)
        if lowered is None:
            return None, last
        steps.extend(lowered)
    return steps, last


# --- running a program -----------------------------------------------------------------------


_MADE: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}  # (a plain dict: dynamo traces it)


def pair_indices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows a and columns b of the packed pairs a ≤ b, and where the pairs (a, a) sit; made
    once per m, read-only (np.triu_indices(16) alone costs ~15 µs, a run asked ~6 times)."""
    found = _MADE.get(("pairs", m))
    if found is None:
        rows, cols = np.triu_indices(m)
        found = _MADE[("pairs", m)] = _read_only(rows, cols, np.flatnonzero(rows == cols))
    return found


def _different_pairs(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the packed pairs of two different inputs sit, and their a and b."""
    found = _MADE.get(("different", m))
    if found is None:
        rows, cols, _ = pair_indices(m)
        off = np.flatnonzero(rows != cols)
        found = _MADE[("different", m)] = _read_only(off, rows[off], cols[off])
    return found


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for array in arrays:
        array.flags.writeable = False
    return arrays


def pack(full: np.ndarray) -> np.ndarray:
    """(m, m, ...) → (P, ...)."""
    rows, cols, _ = pair_indices(full.shape[0])
    return full[rows, cols]


def unpack(packed: np.ndarray, m: int, mode: str) -> np.ndarray:
    """(P, ...) → (m, m, ...); in full mode the (b, a) block is the pixel transpose of (a, b)."""
    rows, cols, _ = pair_indices(m)
    out = np.empty((m, m, *packed.shape[1:]), dtype=packed.dtype)
    out[rows, cols] = packed
    if mode == "full":
        d = (packed.ndim - 1) // 2
        packed = packed.transpose(0, *range(d + 1, 2 * d + 1), *range(1, d + 1))
    out[cols, rows] = packed
    return out


def run(
    program: Program, nngp: np.ndarray, gap: np.ndarray | None = None, ntk: np.ndarray | None = None
) -> tuple:
    """The output NNGP, NTK (or None) and gap G (or None) from the packed input second
    moments (and, for a program with the gap, their packed gap; the NTK starts at ``ntk``,
    else 0 as before the first weight layer). The steps are bound
    once to buffers allocated per run and then applied layer after layer without allocating
    (fresh arrays of a few hundred KiB per operation would cost page faults) and without
    re-dispatching."""
    return run_until_fixed(program, nngp, gap, ntk)[0]


def activation_passes(steps: tuple) -> int:
    """How many activation layers the steps apply (each pass of a Loop counted)."""
    total = 0
    for step in steps:
        if isinstance(step, Loop):
            total += step.times * activation_passes(step.body)
        elif isinstance(step, Activate):
            total += 1
    return total


def smallest_one_minus_c(k: np.ndarray, m: int, mode: str, spatial: tuple[int, ...]) -> Any:
    """The smallest 1 − K_ab/√(K_aa K_bb) over the entries of a packed kernel that pair two
    different (input, pixel)s (inf when there are none; NaN counts as 0), as a 0-d array:
    branchless, so torch.compile traces it too."""
    rows, cols, diag = pair_indices(m)
    own = k[diag]
    if not (mode == "full" and spatial):  # pairs of different inputs only (same pixel)
        if m == 1:
            return np.asarray(np.inf)
        off, first, second = _different_pairs(m)
        root = np.sqrt(own)
        c = k[off] / root[first] / root[second]
        return 1 - np.max(np.where(np.isfinite(c), c, 1.0))  # 0/0, x/0: counted as c = 1
    n = int(np.prod(spatial))  # pixel pairs: also of one input at two pixels
    own = own.reshape(m, n, n)[:, np.arange(n), np.arange(n)]
    first = np.sqrt(own[rows]).reshape(len(rows), n, 1)
    second = np.sqrt(own[cols]).reshape(len(rows), 1, n)
    same = (rows == cols).reshape(-1, 1, 1) & np.eye(n, dtype=bool).reshape(1, n, n)
    k = k.reshape(len(rows), n, n)
    s = 1 - k / np.where(first > 0, first, 1.0) / np.where(second > 0, second, 1.0)
    s = np.where(np.isnan(s) | (first * second == 0), 0.0, s)
    return np.min(np.where(same, np.inf, s))


def run_checked(program: Program, nngp: np.ndarray, gap: np.ndarray | None = None) -> tuple:
    """``run``, and the smallest 1 − c its readout read (``_apply``)."""
    state = _start(program, nngp, gap)
    state, smallest = _apply(program, _bound(program, state.shape), state)
    return _outputs(program, state, copy=True), smallest


def _apply(program: Program, ops: list[Op], state: np.ndarray) -> tuple[np.ndarray, Any]:
    """The ops applied to the state; also, for a program without the gap row, the smallest
    1 − c of the kernel a readout reads (``smallest_one_minus_c``: the entries the depth-safe
    choice must see), else None."""
    smallest = None
    for op in ops:
        if getattr(op, "reads_out", False) and not program.gap:
            smallest = smallest_one_minus_c(state[0], program.m, program.mode, program.spatial)
        state = op(state)
    return state, smallest


def run_until_fixed(
    program: Program, nngp: np.ndarray, gap: np.ndarray | None = None, ntk: np.ndarray | None = None
) -> tuple[tuple, int | None]:
    """``run``, and after how many passes the program's first step, a Loop, met an exact
    fixed point (None: it ran them all, or the first step is no Loop)."""
    state = _start(program, nngp, gap, ntk)
    ops = _bound(program, state.shape)
    state = _apply(program, ops, state)[0]
    return _outputs(program, state, copy=True), getattr(ops[0], "stopped", None)


def _outputs(program: Program, state: np.ndarray, copy: bool) -> tuple:
    rows = [state[0], state[1] if program.ntk else None, state[-1] if program.gap else None]
    return tuple(r.copy() if copy and r is not None else r for r in rows)


_BOUND = threading.local()  # per thread: the buffers of concurrent runs must not be shared


def _bound(program: Program, shape: tuple[int, ...]) -> list[Op]:
    """The program's steps bound to this thread's buffers for this state shape (kept for
    the last few programs: binding costs about as much as a few layers of a small kernel)."""
    cache = getattr(_BOUND, "ops", None)
    if cache is None:
        cache = _BOUND.ops = {}
    key = (program, shape)
    if key not in cache:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        cache[key] = _bind(program, program.steps, shape, program.spatial,
                           _Buffers(functional=False))[0]  # fmt: skip
    return cache[key]


@lru_cache(maxsize=16)
def compiled_run(program: Program, shape: tuple[int, ...]) -> Callable:
    """``run`` for packed inputs of this shape, traced by torch.compile into fused loops
    (compiled on the first call, which takes seconds; torch caches compiled code on disk).
    The same steps, bound without buffers: every operation returns a new array. Returns
    the outputs and the smallest 1 − c its readout read, as ``run_checked``."""
    import torch

    state_shape = (program.rows, *shape)
    ops = _bind(program, program.steps, state_shape, program.spatial, _Buffers(functional=True))[0]
    pair_indices(program.m), _different_pairs(program.m)  # made here: the trace only reads them

    def fused(nngp: np.ndarray, gap: np.ndarray | None = None) -> tuple:
        state, smallest = _apply(program, ops, _start(program, nngp, gap))
        return (*_outputs(program, state, copy=False), smallest)

    # torch.compile caches per code object (8 variants at most): a fresh copy per program;
    # inductor's C++ wrapper: its Python one cost ~0.1 ms a call (CNN-F: 0.43 vs 0.52 ms)
    own = types.FunctionType(fused.__code__.replace(), fused.__globals__, fused.__name__,
                             fused.__defaults__, fused.__closure__)  # fmt: skip
    return torch.compile(own, dynamic=False, fullgraph=True, options={"cpp_wrapper": True})


def _start(
    program: Program, nngp: np.ndarray, gap: np.ndarray | None, ntk: np.ndarray | None = None
) -> np.ndarray:
    """The state array (h, P, *pixels): K, Θ (0 before the first weight layer) and G."""
    rows = [nngp] + [np.zeros_like(nngp) if ntk is None else ntk] * program.ntk
    if program.gap:
        rows.append(gap)
    return np.stack(rows)


Op = Callable[[np.ndarray], np.ndarray]


class _Buffers:
    """Arrays to compute in, made once per shape and reused across layers; in functional
    mode none (None everywhere: each operation allocates, as torch.compile wants)."""

    def __init__(self, functional: bool) -> None:
        self.functional = functional
        self._made: dict[tuple, np.ndarray] = {}

    def __call__(self, name: str, *shape: int) -> np.ndarray | None:
        key = (name, *shape)
        if self.functional:
            return None
        if key not in self._made:
            self._made[key] = np.empty(shape)
        return self._made[key]

    def rows(self, array: np.ndarray | None, count: int) -> Any:
        """Indexable rows of a buffer: the buffer itself, or ``count`` None in functional mode."""
        return (None,) * count if array is None else array

    def alternate_rows(self, shape: tuple) -> Callable[[np.ndarray], tuple]:
        """x ↦ (the state buffer x is not, its rows as views made once); in functional mode
        (None, None for each row)."""
        if self.functional:
            nothing = (None, (None,) * shape[0])
            return lambda x: nothing
        first, second = self("state 1", *shape), self("state 2", *shape)
        into_second, into_first = (second, tuple(second)), (first, tuple(first))
        return lambda x: into_second if x is first else into_first

    def stacked(self, out: np.ndarray | None, rows: list[np.ndarray]) -> np.ndarray:
        """The state from its rows: already in ``out``, or stacked in functional mode."""
        return out if out is not None else np.stack(rows)


def _bind(program: Program, steps: tuple, shape: tuple, spatial: tuple, buffers: _Buffers):
    """Each step as a function of the state array; also the spatial shape after them. An
    activation's constant factor (``JointDual.scale``) is folded into a weight layer that
    directly follows it."""
    ops: list[Op] = []
    carried = 1.0
    for i, step in enumerate(steps):
        if isinstance(step, Loop):
            body, spatial = _bind(program, step.body, shape, spatial, buffers)
            ops.append(_repeat(body, step.times, not buffers.functional, step.path))
        elif isinstance(step, Linear):
            ops.append(_bind_linear(program, step, shape, spatial, buffers, carried))
            carried = 1.0
        elif isinstance(step, Activate):
            fold = i + 1 < len(steps) and isinstance(steps[i + 1], Linear)
            ops.append(_bind_activate(program, step, shape, spatial, buffers, not fold))
            carried = step.dual.scale if fold else 1.0
        else:
            ops.append(_bind_readout(program, step, spatial))
            shape, spatial = shape[:2], ()
    return ops, spatial


STOP_CHECK = 16  # passes between checks for an exact fixed point and for overflow
OVERFLOW_GUARD = 1e150  # beyond this, products of two kernel entries overflow float64


def _repeat(body: list[Op], times: int, checked: bool, path: str = "") -> Op:
    """The body ``times`` times. ``checked`` (eager runs): every STOP_CHECK passes the state
    is compared with the one a pass before — a pass that returned its input exactly (a
    floating-point fixed point, NTK included) ends the loop, the rest would repeat it — and
    a state past OVERFLOW_GUARD (or NaN) is a TheoryError naming the repeat node. The op's
    ``stopped`` says after how many passes its last run stopped so (None: it ran them all)."""

    def repeat(state: np.ndarray) -> np.ndarray:
        before, last = None, None  # last: (pass, largest entry) at the previous check
        if checked:  # (torch.compile runs unchecked: it traces no attribute writes)
            repeat.stopped = None
        for i in range(times):
            if checked and i % STOP_CHECK == STOP_CHECK - 1:
                before = state.copy()
            for op in body:
                state = op(state)
            if before is not None:
                if np.array_equal(state, before):
                    repeat.stopped = i + 1
                    return state
                if not np.abs(state).max() < OVERFLOW_GUARD:
                    where = f"{path or 'a repeat block'}: the kernel"
                    raise overflow(where, f"after {i + 1} passes" + _growth(before, i, last, times))
                last, before = (i, float(np.abs(before).max())), None
        return state

    return repeat


def _growth(before: np.ndarray, at: int, last: tuple[int, float] | None, times: int) -> str:
    """The divergence as a rate, from the largest entry one pass before the overflow."""
    return growth_note((at, float(np.abs(before).max())), last, times)


def growth_note(now: tuple[int, float], last: tuple[int, float] | None, times: int) -> str:
    """': it grows by a factor r per pass …' from the largest kernel entry at two passes
    (pass, value), extrapolated in log10 to the block's end; '' when it cannot say."""
    (at, scale) = now
    if last is None or not np.isfinite(scale) or last[1] <= 0 or scale <= last[1] or at <= last[0]:
        return ""
    rate = (scale / last[1]) ** (1 / (at - last[0]))
    final = np.log10(scale) + (times - at) * np.log10(rate)
    return (
        f": it grows by a factor {rate:.6g} per pass (largest entry 10^{np.log10(scale):.1f} "
        f"after {at} passes, about 10^{final:.1f} after all {times})"
    )


def overflow(where: str, when: str = "") -> TheoryError:
    """The typed error of a kernel that left float64's range (deep in the chaotic phase)."""
    return TheoryError(
        f"{where} overflowed float64{' ' + when if when else ''}",
        hint="the network is deep in the chaotic phase; use fewer layers or a smaller sigma_w2",
    )


def _bind_linear(
    program: Program, step: Linear, shape, spatial, buffers: _Buffers, carried: float
) -> Op:
    """xiao_bahri eq. 6 (dense) and eq. 31 (conv, with xiao2018 eq. 2.3 for the NNGP); the
    input arrives divided by ``carried``."""
    mix = _mixer(step.shifts, spatial, program.mode, step.sigma_w2 * carried, shape, buffers)
    sb2 = step.sigma_b2
    standard = program.parameterization == "standard"
    if standard:
        ones = tuple((offsets, 1.0) for offsets, _ in step.shifts)
        plain_shape = (1, *shape[1:])
        plain_mix = _mixer(ones, spatial, program.mode, step.fan_in * carried, plain_shape,
                           buffers)  # fmt: skip
        plain_out = buffers("plain", *plain_shape)

    bias_gap = conv_gap = None
    if program.gap and not step.shifts:
        bias_gap = _bias_gap(program.m, sb2, buffers)
    elif program.gap:
        conv_gap = _conv_gap(program, step, spatial, step.sigma_w2 * carried)

    pick, functional = buffers.alternate_rows(shape), buffers.functional

    def linear(x: np.ndarray) -> np.ndarray:
        added = None if conv_gap is None else conv_gap(x[0])  # reads the input: before mixing
        out, rows = pick(x)  # eager: the output buffer and its row views, made once
        mixed = mix(x, out)  # eager: written into out
        src = mixed if functional else rows
        if bias_gap is not None:  # before the bias: it reads σ_w² T, then K′ = σ_w² T + σ_b²
            state_gap = np.add(src[-1], bias_gap(src[0]), out=rows[-1])
        elif added is not None:
            state_gap = np.add(src[-1], added, out=rows[-1])
        k = np.add(src[0], sb2, out=rows[0])
        state = [k]
        if program.ntk:
            theta = src[1]
            if standard:
                theta = np.add(theta, plain_mix(x[:1], plain_out)[0], out=rows[1])
                theta = np.add(theta, 1.0, out=rows[1])
            else:
                theta = np.add(theta, k, out=rows[1])
            state.append(theta)
        if program.gap:
            state.append(state_gap)
        return buffers.stacked(out, state)

    return linear


def _bias_gap(m: int, sb2: float, buffers: _Buffers) -> Callable[[np.ndarray], Any]:
    """u ↦ the Cauchy–Schwarz gap the bias adds to a flat packed kernel u = σ_w² T:
    σ_b² (√u_a − √u_b)² / (√(q′_a q′_b) + √(u_a u_b) + σ_b²), q′ = u + σ_b² (gap.bias_gap).
    Eager: skipped when every variance is equal, else on the m × m grid of input pairs in
    buffers, then packed (gathers per pair would cost 4x); functional (torch.compile): one
    branchless expression."""
    rows, cols, diag = pair_indices(m)
    if sb2 == 0:
        return lambda u: 0.0

    def whole(u: np.ndarray) -> np.ndarray:
        own = u[diag]
        root, shifted = np.sqrt(own), np.sqrt(own + sb2)
        apart = root[rows] - root[cols]
        return sb2 * apart * apart / (shifted[rows] * shifted[cols] + root[rows] * root[cols] + sb2)

    if buffers.functional:
        return whole
    flat_pairs = rows * m + cols
    apart, below, term = (buffers(f"bias gap {i}", m, m) for i in range(3))
    packed = buffers("bias gap", len(rows))

    def gap(u: np.ndarray) -> np.ndarray | float:
        own = u[diag]
        if own.min() == own.max():  # equal variances (every layer on the fixed point): none
            return 0.0
        root, shifted = np.sqrt(own), np.sqrt(own + sb2)
        np.subtract.outer(root, root, out=apart)
        np.multiply(apart, apart, out=apart)
        np.multiply.outer(shifted, shifted, out=below)
        np.add(below, np.multiply.outer(root, root, out=term), out=below)
        np.add(below, sb2, out=below)
        np.divide(apart, below, out=apart)
        np.multiply(apart, sb2, out=apart)
        return _gather(apart.reshape(-1), flat_pairs, packed)

    return gap


def _conv_gap(program: Program, step: Linear, spatial: tuple[int, ...], scale: float):
    """k ↦ the Cauchy–Schwarz gap a conv layer adds to scale·Σ_β v_β G(α + β, α′ + β) for the
    packed input kernel k (xiao2018 eq. 2.3): ``_lagrange_gap`` of a_β = √(scale v_β
    K_aa(α + β)), b_β = √(scale v_β K_bb(α′ + β)) and the bias (gap.bias_gap is the dense
    layer's case)."""
    rows, cols, diag = pair_indices(program.m)
    m, d, n = program.m, len(spatial), int(np.prod(spatial))
    pixel, axes = np.arange(n), tuple(range(1, 1 + d))
    taps = [(offsets, weight * scale) for offsets, weight in step.shifts if weight != 0]
    sb2, full = step.sigma_b2, program.mode == "full"

    def ends(root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two (input, pixel) ends of every packed entry: broadcastable (P, *pixels)."""
        if full:
            return (root[rows].reshape(-1, *spatial, *(1,) * d),
                    root[cols].reshape(-1, *(1,) * d, *spatial))  # fmt: skip
        return root[rows], root[cols]

    def gap(k: np.ndarray) -> np.ndarray:
        own = k[diag].reshape(m, n, n)[:, pixel, pixel] if full else k[diag].reshape(m, n)
        root = np.sqrt(own.reshape(m, *spatial))
        moved = [(weight, *ends(np.roll(root, offsets, axes))) for offsets, weight in taps]
        return _lagrange_gap(moved, sb2)

    return gap


def _lagrange_gap(terms: list[tuple[float, np.ndarray, np.ndarray]], sb2: float) -> np.ndarray:
    """√(Σa² Σb²) − Σab for a_i = √w_i a_i′, b_i = √w_i b_i′ over ``terms`` (w_i, a_i′, b_i′)
    and one more pair a₀ = b₀ = √σ_b², as Σa² Σ(b − t a)²/(√(Σa² Σb²) + Σab), t = Σab/Σa²
    (Lagrange's identity: the residual of b after projecting out a); non-negative terms only,
    0 where Σa² = 0."""
    first = sum(w * a * a for w, a, _ in terms) + sb2
    second = sum(w * b * b for w, _, b in terms) + sb2
    cross = sum(w * a * b for w, a, b in terms) + sb2
    t = cross / _positive(first)
    residual = sum(w * (b - t * a) ** 2 for w, a, b in terms) + sb2 * (1 - t) ** 2
    return first * residual / _positive(np.sqrt(first) * np.sqrt(second) + cross)


def _positive(x: np.ndarray) -> np.ndarray:
    """x with its zeros replaced by 1 (a divisor whose zero entries multiply a zero)."""
    return np.where(x > 0, x, 1.0)


def _pixel_gap(k: np.ndarray, gap: np.ndarray, m: int, n: int, full: bool) -> np.ndarray:
    """The gap of a flatten readout, √(K̄_aa K̄_bb) − K̄_ab for K̄ the same-pixel kernels
    averaged over the n pixels (xiao_bahri eq. 18): the mean same-pixel gap plus the
    Cauchy–Schwarz gap of the pixels' variances, as in ``_conv_gap`` with weights 1/n."""
    rows, cols, diag = pair_indices(m)
    pixel = np.arange(n)
    if full:
        k = k.reshape(len(k), n, n)[:, pixel, pixel]
        gap = gap.reshape(len(gap), n, n)[:, pixel, pixel]
    k, gap = k.reshape(len(k), n), gap.reshape(len(gap), n)
    root = np.sqrt(k[diag])
    a, b = root[rows], root[cols]
    return gap.mean(1) + _lagrange_gap([(1 / n, a[:, i], b[:, i]) for i in range(n)], 0.0)


def _mixer(shifts, spatial, mode: str, scale: float, shape, buffers: _Buffers):
    """(x, out) ↦ scale · Σ_β v_β X(α + β, α' + β) (full) or X(α + β) (diagonal) on the
    periodic grid. Eager: written into ``out`` and returned as ``out`` itself (buffer
    identity matters to ``_Buffers.alternate_rows``), by a small matrix product for up to 64
    same-pixel entries, else by rolls written as block copies (the centre tap needs none).
    Functional (torch.compile): a sum of np.roll, which the compiler fuses with the
    activation that follows."""
    if not shifts:
        return lambda x, out: np.multiply(x, scale, out=out)
    live = tuple((offsets, weight * scale) for offsets, weight in shifts if weight != 0)
    if buffers.functional:
        axes = _pixel_axes(spatial, mode, first=2)
        rolls = [(_roll_offsets(offsets, mode), weight) for offsets, weight in live]

        def rolled(x: np.ndarray, out: None) -> np.ndarray:
            total = 0.0 * x
            for offsets, weight in rolls:
                total = total + weight * np.roll(x, offsets, axes)
            return total

        return rolled
    rows, size = shape[0] * shape[1], int(np.prod(shape[2:]))
    if mode == "diagonal" and size <= 64:
        matrix = _circulant(live, spatial)

        def circulant(x: np.ndarray, out: np.ndarray) -> np.ndarray:
            np.matmul(x.reshape(rows, size), matrix, out=out.reshape(rows, size))
            return out

        return circulant
    axes = _pixel_axes(spatial, mode, first=1)
    moves = [(_roll_blocks(shape[1:], _roll_offsets(o, mode), axes), w) for o, w in live]
    term = buffers("term", *shape[1:])
    common = live[0][1] if len({weight for _, weight in live}) == 1 else None

    def rolled_blocks(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        for h in range(len(x)):
            total, started = out[h], False
            for blocks, weight in moves:
                if blocks is None:  # the centre tap: x itself
                    source = x[h]
                else:
                    for target, origin in blocks:
                        term[target] = x[h][origin]
                    source = term
                scale_by = 1.0 if common is not None else weight
                if not started:
                    np.multiply(source, scale_by, out=total)
                    started = True
                elif scale_by == 1.0:
                    np.add(total, source, out=total)
                else:
                    np.multiply(source, scale_by, out=term)
                    np.add(total, term, out=total)
            if common is not None:  # equal weights (the default uniform v): scale once
                np.multiply(total, common, out=total)
        return out

    return rolled_blocks


def _pixel_axes(spatial: tuple[int, ...], mode: str, first: int) -> tuple[int, ...]:
    """The pixel axes of an array whose pixels start at axis ``first``."""
    d = len(spatial)
    count = 2 * d if mode == "full" else d
    return tuple(range(first, first + count))


def _roll_offsets(offsets: tuple[int, ...], mode: str) -> tuple[int, ...]:
    """A tap moves both pixels of a pixel pair in full mode."""
    return offsets * (2 if mode == "full" else 1)


def _roll_blocks(shape: tuple[int, ...], offsets: tuple[int, ...], axes: tuple[int, ...]):
    """np.roll(x, offsets, axes) as (target, origin) index pairs of block copies (None for
    no move), so that a roll can be written into an existing array."""
    if not any(o % shape[a] for o, a in zip(offsets, axes)):
        return None
    choices = []
    for o, a in zip(offsets, axes):
        n, o = shape[a], o % shape[a]
        choices.append([(slice(o, n), slice(0, n - o)), (slice(0, o), slice(n - o, n))] if o
                       else [(slice(None), slice(None))])  # fmt: skip
    blocks = []
    for combo in product(*choices):
        target, origin = [slice(None)] * len(shape), [slice(None)] * len(shape)
        for (to, fro), a in zip(combo, axes):
            target[a], origin[a] = to, fro
        blocks.append((tuple(target), tuple(origin)))
    return blocks


@lru_cache(maxsize=256)
def _circulant(taps: tuple, spatial: tuple[int, ...]) -> np.ndarray:
    """Same-pixel mixing Σ_β w_β X(α + β) as a matrix acting on the right of (rows, pixels):
    column α takes w from the pixel np.roll by the tap's offsets reads from."""
    size = int(np.prod(spatial))
    grids = np.indices(spatial).reshape(len(spatial), -1)
    matrix = np.zeros((size, size))
    for offsets, weight in taps:
        moved = [(g - o) % n for g, o, n in zip(grids, offsets, spatial)]
        matrix[np.ravel_multi_index(moved, spatial), np.arange(size)] += weight
    return matrix


def _bind_activate(
    program: Program, step: Activate, shape, spatial, buffers: _Buffers, scaled: bool
) -> Op:
    """T(K) and Ṫ(K) ⊙ Θ of the field in x (xiao_bahri eq. 6); divided by the dual's scale
    unless ``scaled``."""
    scratch = buffers.rows(buffers("dual", 3, *shape[1:]), 3)
    products = _variance_products(program.m, spatial, program.mode, shape[1:], buffers)
    prepare, pair, scale = step.dual.prepare, step.dual.pair, step.dual.scale
    if program.gap:
        return _bind_activate_with_gap(program, step, shape, buffers, products, scaled)
    pick = buffers.alternate_rows(shape)

    def activate(x: np.ndarray) -> np.ndarray:
        out, rows = pick(x)  # eager: the output's row views, made once
        k = x[0]
        gg = products(k, prepare)
        if program.ntk:
            t, t_dot = pair(gg, k, (rows[0], rows[1], scratch[0], scratch[1]))
            state = [t, np.multiply(t_dot, x[1], out=rows[1])]
        else:
            state = [pair(gg, k, (rows[0], scratch[2], scratch[0], scratch[1]))[0]]
        state = buffers.stacked(out, state)
        return np.multiply(state, scale, out=out) if scaled else state

    return activate


GAP_CHUNK = 4096  # pairs per slice of the gap rules: their temporaries stay in cache


def _bind_activate_with_gap(
    program: Program, step: Activate, shape, buffers: _Buffers, products, scaled: bool
) -> Op:
    """The activation of a program that carries the gap G: G′ from 1 − c = G/√(q_a q_b)
    by the closed forms of ``gaussian.gap`` (never as a difference), T and Ṫ from G where the
    angle matters (relu). Eager runs work through GAP_CHUNK entries at a time, in place in
    the state buffer and chunk-sized scratch (whole-array temporaries of this many rules
    would cost page faults)."""
    dual = step.dual
    pick = buffers.alternate_rows(shape)
    size = int(np.prod(shape[1:]))
    chunks = [slice(start, min(start + GAP_CHUNK, size)) for start in range(0, size, GAP_CHUNK)]
    scratch = buffers("gap scratch", 4, min(GAP_CHUNK, size))

    def linear_gap(gg, k, gap, out):  # linear a·x: T = a² K, the gap over the scale a² is G
        t, t_dot = dual.pair(gg, k, (out[0], out[1], out[3], out[4]))
        return t, t_dot, gap

    gap_rule = dual.pair_from_gap or linear_gap  # its g is q itself: gg = q_a q_b

    def activate(x: np.ndarray) -> np.ndarray:
        gg = products(x[0], dual.prepare)
        if buffers.functional:
            t, t_dot, new_gap = gap_rule(gg, x[0], x[-1], (None,) * 6)
            state = np.stack([t, t_dot * x[1], new_gap] if program.ntk else [t, new_gap])
            return state * dual.scale if scaled else state
        out = pick(x)[0]
        flat_out, flat_x = out.reshape(len(out), -1), x.reshape(len(x), -1)
        flat_gg = gg.reshape(-1)
        for part in chunks:
            n = part.stop - part.start
            t_dot_at = flat_out[1, part] if program.ntk else scratch[3, :n]
            into = (flat_out[0, part], t_dot_at, flat_out[-1, part], *scratch[:3, :n])
            t, t_dot, new_gap = gap_rule(flat_gg[part], flat_x[0, part], flat_x[-1, part], into)
            for target, value in ((into[0], t), (into[2], new_gap), (t_dot_at, t_dot)):
                if value is not target:
                    target[...] = value
            if program.ntk:
                np.multiply(t_dot_at, flat_x[1, part], out=t_dot_at)
        return np.multiply(out, dual.scale, out=out) if scaled else out

    return activate


def _gather(source: np.ndarray, at: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """source[at] along the first axis, into ``out`` where there is one: mode "clip" (the
    indices are the program's own, always in range), as mode "raise" first writes a copy
    (CNN-F's gather 1.42 → 0.54 µs)."""
    if out is None:
        return source.take(at, axis=0)
    return source.take(at, axis=0, out=out, mode="clip")


def _variance_products(m: int, spatial, mode: str, shape, buffers: _Buffers):
    """(k, g) ↦ g(Var u)·g(Var v) for the two inputs (and pixels) of every packed entry."""
    rows, cols, diag = pair_indices(m)
    if not spatial or mode == "diagonal":
        first_out, second_out = buffers("first of pair", *shape), buffers("second of pair", *shape)
        products_out = buffers("products", *shape)
        first_at, second_at = diag[rows], diag[cols]  # where each pair's variances sit

        def same_pixel(k: np.ndarray, g: Callable) -> np.ndarray:
            if g is unchanged:
                first = _gather(k, first_at, first_out)
                second = _gather(k, second_at, second_out)
            else:  # g once per variance, then to the pairs
                own = g(k.take(diag, axis=0))
                first = _gather(own, rows, first_out)
                second = _gather(own, cols, second_out)
            return np.multiply(first, second, out=products_out)

        return same_pixel
    n, d = int(np.prod(spatial)), len(spatial)
    pixel = np.arange(n)
    products_out = buffers("products", *shape)

    def pixel_pairs(k: np.ndarray, g: Callable) -> np.ndarray:
        own = g(k[diag].reshape(m, n, n)[:, pixel, pixel])
        first = own[rows].reshape(-1, *spatial, *(1,) * d)
        second = own[cols].reshape(-1, *(1,) * d, *spatial)
        return np.multiply(first, second, out=products_out)

    return pixel_pairs


def _bind_readout(program: Program, step: Readout, spatial) -> Op:
    """xiao_bahri eq. 18: the mean over every pixel pair (pool) or same-pixel pair (flatten).
    Marked ``reads_out`` (``_apply`` checks the kernel it reads)."""
    n = int(np.prod(spatial))
    pixel = np.arange(n)

    full = program.mode == "full"
    rows, cols, diag = pair_indices(program.m)

    def readout(x: np.ndarray) -> np.ndarray:
        h, pairs = x.shape[:2]
        if step.pool:
            out = x.reshape(h, pairs, n * n).mean(2)
            if program.gap:  # by difference: the pooled gap is not carried (see _run_program)
                own = out[0][diag]
                root = np.sqrt(own[rows]) * np.sqrt(own[cols])
                out = np.concatenate([out[:-1], np.maximum(root - out[0], 0.0)[None]])
            return out
        if full:
            same = x.reshape(h, pairs, n, n)[:, :, pixel, pixel]
        out = (same if full else x).reshape(h, pairs, n).mean(2)
        if program.gap:
            flat_gap = _pixel_gap(x[0], x[-1], program.m, n, full)
            out = np.concatenate([out[:-1], flat_gap[None]])
        return out

    readout.reads_out = True
    return readout
