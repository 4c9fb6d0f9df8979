"""Large-depth analyses of the kernels: CNN depth scales per Fourier mode (xiao2018
§2.1.5–2.1.6) and the NTK spectrum, maximal learning rate and mean predictor (xiao_bahri §3
and its appendix table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np
from tqdm import tqdm

from workbench.compile.graph import node_attrs, spec_graph
from workbench.errors import TheoryError, UnsupportedError
from workbench.nodes.base import blocks, flat_nodes, has_rule, module_of, rule
from workbench.precision import F64
from workbench.spec.model import Spec
from workbench.theory.evaluate import Evaluator
from workbench.theory.fc_fixed_points import analyze_cycle
from workbench.theory.fc_maps import body_steps
from workbench.theory.state import KernelState


def block_analysis(block: Any):
    """The FC fixed-point analysis of a repeat body (dense or conv): q*, c*, χ₁, χ_c*."""
    return analyze_cycle(body_steps(block.body), F64, block.path)


def _repeat_blocks(spec: Spec) -> list[Any]:
    """The spec's repeat blocks, outer before inner, residual bodies included."""
    return list(blocks(spec.layers))


# --- Fourier modes -----------------------------------------------------------------------


@dataclass
class ModeTable:
    path: str
    chi_c: float
    modes: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": self.path, "chi_c": self.chi_c, "modes": self.modes}


def conv_modes(spec: Spec) -> list[ModeTable]:
    """For each conv repeat block: λ_k, the DFT of the tap variances v (as the conv's init
    draws them: ``nodes.conv.tap_variances``) on the spatial grid
    (the eigenvalues of A_v ⋆ on a mode of total frequency k), and ξ_k = −1/log|χ_c* λ_k|
    (xiao2018 eqs. 2.11–2.13); ``None`` where the depth scale is infinite."""
    tables = []
    spatial = tuple(spec.input_shape[1:])
    for block in _repeat_blocks(spec):
        convs = [n for n in flat_nodes(block.body) if has_rule(n, "mode_eigenvalues")]
        if not convs:
            continue
        if len(convs) > 1:
            raise UnsupportedError(f"{block.path}: modes are defined for one conv per body")
        conv = convs[0]
        analysis = block_analysis(block)
        chi_c = float(analysis.chi_c)
        eigenvalues = rule(conv, "mode_eigenvalues")(conv, spatial)
        table = ModeTable(block.path, chi_c)
        for freq in product(*(range(n) for n in spatial)):
            lam = complex(eigenvalues[freq])
            value = float(lam.real) if abs(lam.imag) < 1e-12 else float(abs(lam))
            value = 0.0 if abs(value) < 1e-12 else value
            rate = abs(chi_c * value)
            xi = None if rate >= 1 else 0.0 if rate == 0 else -1 / math.log(rate)
            table.modes.append(
                {"frequency": list(freq) if len(freq) > 1 else freq[0], "lambda": value, "xi": xi}
            )
        tables.append(table)
    if not tables:
        raise UnsupportedError("the spec has no repeat block with a conv layer")
    return tables


# --- NTK spectrum ------------------------------------------------------------------------


@dataclass
class SpectrumRow:
    """One depth of the spectrum; values in the context's numbers (None where not vouched
    for, with ``note`` saying why)."""

    depth: int
    lambda_max: Any
    lambda_rest: Any
    kappa: Any
    eta_max: Any
    asymptotic: dict | None
    note: str | None = None


@dataclass
class NTKSpectrum:
    architecture: str  # FC, CNN-F or CNN-P
    phase: str
    q_star: Any
    chi_1: float
    chi_c: float | None
    xi_1: float | None
    xi_star: float | None
    m: int
    c0: float
    pixels: int
    rows: list[SpectrumRow]
    precision: str = "float64"
    representation: str = ""
    notes: list[str] = field(default_factory=list)
    ctx: Any = F64

    def to_dict(self) -> dict:
        def num(v: Any) -> Any:
            return None if v is None else self.ctx.to_json(v)

        out = {
            "architecture": self.architecture,
            "phase": self.phase,
            "q_star": num(self.q_star),
            "chi_1": self.chi_1,
            "chi_c": self.chi_c,
            "xi_1": self.xi_1,
            "xi_star": self.xi_star,
            "m": self.m,
            "c0": float(self.c0),
            "precision": self.precision,
            "lambda_rest_from": self.representation,
            "depths": [],
        }
        for r in self.rows:
            row = {"depth": r.depth, "lambda_max": num(r.lambda_max),
                   "lambda_rest": num(r.lambda_rest), "kappa": num(r.kappa),
                   "eta_max": num(r.eta_max), "asymptotic": r.asymptotic}  # fmt: skip
            if r.note:
                row["note"] = r.note
            out["depths"].append(row)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _architecture(spec: Spec, block: Any) -> tuple[str, Any]:
    """FC for a flat block; CNN-P or CNN-F by the first readout after a spatial one."""
    if len(node_attrs(spec_graph(spec), block.path)["in_shape"]) == 1:
        return "FC", None
    order = list(flat_nodes(spec.layers))
    after = order[order.index(block) + 1 :]  # its body, then everything after it
    readout = next((n for n in after if getattr(module_of(n), "READOUT", None)), None)
    if readout is None:
        raise UnsupportedError("a CNN spectrum needs a pool or flatten readout after the block")
    return ("CNN-P" if module_of(readout).READOUT == "pool" else "CNN-F"), readout


def _asymptotic(
    phase: str, arch: str, m: int, d: int, q: float, chi1: float, chic: float, c_star: float,
    depth: int,
) -> dict:  # fmt: skip
    """xiao_bahri eqs. 9–17 and §3.4 (CNN-P divides λ_rest by d, multiplies κ's m by d)."""
    if phase == "critical":
        md, scale = (m * d, d) if arch == "CNN-P" else (m, 1)
        return {
            "lambda_max": (md + 2) * q * depth / (3 * scale),
            "lambda_rest": 2 * q * depth / (3 * scale),
            "kappa": (md + 2) / 2,
        }
    if phase == "ordered":
        return {"lambda_max": m * q / (1 - chi1), "lambda_rest": 0.0, "kappa": math.inf}
    diag = q * (chi1 ** (depth + 1) - 1) / (chi1 - 1)
    off = q * c_star / (1 - chic) if chic < 1 else math.inf
    if arch == "CNN-P":
        diag = diag / d + off * (1 - 1 / d)
    return {"lambda_max": diag + (m - 1) * off, "lambda_rest": diag - off, "kappa": 1.0}


def ntk_spectrum(
    spec: Spec,
    m: int,
    c0: float,
    depths: list[int],
    progress: bool = False,
    digits: int | None = None,
) -> NTKSpectrum:
    """λ_max, λ_rest (the other m − 1 eigenvalues, all equal), κ = λ_max/λ_rest and
    η_max = 2/λ_max of the NTK after ``depth`` iterations of the spec's first repeat block
    (plus its readout), for m inputs of variance q* and pairwise correlation c0 (every pixel
    pair of a CNN likewise), beside the asymptotic formulas of the phase (xiao_bahri §3,
    appendix table). The NTK is Θ_d I + Θ_o (11ᵀ − I): FC blocks carry λ_rest = Θ_d − Θ_o by
    its own recursion (``equicorrelated``), CNN blocks read it off the kernel and mark rows
    where that difference has lost its digits (``digits``: compute at N digits instead). A
    depth whose kernel leaves float64's range is marked; the depths before it are kept."""
    from workbench.precision import context

    ctx = context(digits)
    blocks = _repeat_blocks(spec)
    if not blocks:
        raise UnsupportedError("the spec has no repeat block")
    if m < 2 or not -1 / (m - 1) < c0 < 1:
        raise TheoryError("need m >= 2 inputs and -1/(m-1) < c0 < 1")
    if any(int(x) < 1 for x in depths):
        raise TheoryError("depths must be positive")
    block = blocks[0]
    analysis = block_analysis(block)
    notes = []
    chi1 = float(analysis.chi_1)
    chic = None if analysis.chi_c is None else float(analysis.chi_c)
    if analysis.q_star is None:
        q = 1.0
        notes.append(f"{block.path}: no finite fixed point q* ({'; '.join(analysis.notes)}); "
                     "inputs of variance 1, no asymptotic formulas")  # fmt: skip
    else:
        q = float(analysis.q_star)
    arch, readout = _architecture(spec, block)
    spatial = tuple(spec.input_shape[1:]) if arch != "FC" else ()
    d = int(np.prod(spatial)) if spatial else 1
    if arch == "FC":
        from workbench.theory.equicorrelated import initial, passes

        states = passes(body_steps(block.body), initial(analysis.q_star or 1, c0, ctx), ctx)
        representation = (
            "its own recursion (depth-safe)"
            if ctx.fast_float64
            else ("its own recursion, gaps as differences of expectations (rows vouched for only)")
        )
    else:
        states = _cnn_states(spec, block, readout, m, c0, q, spatial, arch, ctx)
        representation = "Θ_aa − Θ_ab of the kernel"
    bar = tqdm(total=max(depths, default=0), desc="NTK spectrum", disable=not progress,
               leave=False)  # fmt: skip
    rows, done = [], 0
    with ctx.active():
        for depth in sorted(set(int(x) for x in depths)):
            try:
                for _ in range(depth - done):
                    state = next(states)
                    bar.update()
            except TheoryError as exc:
                rows.append(SpectrumRow(depth, None, None, None, None, None,
                                        f"not computed: {exc.message}"))  # fmt: skip
                break
            done = depth
            lam_max, lam_rest = state.spectrum(m)
            asymptotic = None
            if analysis.q_star is not None:
                asymptotic = _asymptotic(analysis.phase, arch, m, d, q, chi1, chic,
                                         float(analysis.c_star), depth)  # fmt: skip
            rows.append(_row(depth, lam_max, lam_rest, asymptotic, state, ctx))
    bar.close()
    xi_1, xi_star = ntk_depth_scales(chi1, chic)
    return NTKSpectrum(arch, analysis.phase, analysis.q_star, chi1, chic, xi_1, xi_star, m, c0,
                       d, rows, ctx.describe(), representation, notes, ctx)  # fmt: skip


def ntk_depth_scales(chi1: float, chic: float | None) -> tuple[float | None, float | None]:
    """xiao_bahri's depth scales of the NTK: ξ₁ = −1/log χ₁ (ordered phase, χ₁ < 1) and
    ξ_* = −1/(log χ_c* − log χ₁), where the NTK's off-diagonal approaches its limit at the
    slower rate; None where the scale is infinite."""
    xi_1 = -1 / math.log(chi1) if 0 < chi1 < 1 else None
    both = chic is not None and chic > 0 and chi1 > 0
    gap = math.log(chic) - math.log(chi1) if both else -math.inf
    return xi_1, (-1 / gap if gap < 0 else None)


VOUCHED_DIGITS = 1e-8  # a difference Θ_aa − Θ_ab below this share of Θ_aa has lost 8 digits


def _row(depth: int, lam_max: Any, lam_rest: Any, asymptotic, state, ctx) -> SpectrumRow:
    note = None
    if getattr(state, "cancelled", False) and ctx.fast_float64:
        note = ("lambda_rest is below float64's resolution of Θ_aa − Θ_ab here (rounding "
                "noise): rerun with --digits")  # fmt: skip
        return SpectrumRow(depth, lam_max, None, None, 2 / lam_max, asymptotic, note)
    kappa = lam_max / lam_rest if lam_rest > 0 else None
    if kappa is None:
        note = "lambda_rest = 0: the NTK is singular (kappa infinite)"
    return SpectrumRow(depth, lam_max, lam_rest, kappa, 2 / lam_max, asymptotic, note)


@dataclass(frozen=True)
class _KernelSpectrum:
    """The flat m × m NTK of equicorrelated inputs: (λ_max, λ_rest) from its two entries."""

    theta: Any

    @property
    def cancelled(self) -> bool:
        d, o = self.theta[0, 0], self.theta[0, 1]
        return abs(d - o) < VOUCHED_DIGITS * abs(d)

    def spectrum(self, m: int) -> tuple[Any, Any]:
        d, o = self.theta[0, 0], self.theta[0, 1]
        return d + (m - 1) * o, d - o


def _cnn_states(spec, block, readout, m, c0, q, spatial, arch, ctx):
    """The readout NTK after each pass through a conv block (the general evaluator)."""
    body = node_attrs(spec_graph(spec), block.path)["body"]
    state = _initial(m, c0, q, spatial, "full" if arch == "CNN-P" else "diagonal", ctx)
    ev = Evaluator("ntk")
    while True:
        state = ev.propagate(body, state)
        final = ev.realized(state)
        final = ev.flat(rule(readout, "kernel")(readout, final, ev, {}))
        if not ctx.all_finite(final.ntk):
            raise TheoryError("the NTK left float64's range")
        yield _KernelSpectrum(final.ntk)


def _initial(
    m: int, c0: float, q: float, spatial: tuple[int, ...], mode: str, ctx: Any = F64
) -> KernelState:
    """Pre-activations with variance q and correlation c0 between every other input (and
    pixel); Θ = K as for a first layer in the NTK parameterisation."""
    if not spatial:
        k = q * ((1 - c0) * np.eye(m) + c0)
        return replace(_state(k, mode="flat"), mean=np.zeros(m))
    n = int(np.prod(spatial))
    if mode == "full":
        k = q * ((1 - c0) * np.eye(m * n) + c0)
        k = k.reshape(m, n, m, n).transpose(0, 2, 1, 3).reshape(m, m, *spatial, *spatial)
    else:
        k = q * ((1 - c0) * np.eye(m) + c0)[:, :, None] * np.ones(n)
        k = k.reshape(m, m, *spatial)
    state = _state(ctx.array(k), mode=mode, spatial=spatial)
    return replace(state, mean=ctx.array(np.zeros((m, *spatial))), ctx=ctx)


def _state(k: np.ndarray, mode: str, spatial: tuple[int, ...] = ()) -> KernelState:
    return KernelState(k, k.copy(), np.zeros(k.shape[0]), mode, spatial, channels=1)


# --- predictors ----------------------------------------------------------------------------


def mean_predictor(
    theta_test_train: np.ndarray,
    theta_train_train: np.ndarray,
    y_train: np.ndarray,
    time: float | None = None,
    eta: float = 1.0,
) -> np.ndarray:
    """xiao_bahri eq. 5: μ(X_test) = Θ_te,tr Θ_tr,tr⁻¹ (I − e^{−η Θ_tr,tr t}) Y_tr (t = ∞ when
    ``time`` is None)."""
    theta = (theta_train_train + theta_train_train.T) / 2
    lam, vec = np.linalg.eigh(theta)
    if lam[0] <= 0:
        raise TheoryError("Θ(train, train) is singular; add a ridge or use fewer layers")
    decay = np.ones_like(lam) if time is None else 1 - np.exp(-eta * lam * time)
    return theta_test_train @ (vec * (decay / lam)) @ vec.T @ np.asarray(y_train, float)


def prediction_gap(
    theta_test_train: np.ndarray,
    theta_train_train: np.ndarray,
    theta_star_test_train: np.ndarray,
    theta_star_train_train: np.ndarray,
    y_train: np.ndarray,
    ridge: float = 0.0,
) -> np.ndarray:
    """xiao_bahri eq. 7: Δˡ Y = (Θˡ_te,tr (Θˡ_tr,tr + σI)⁻¹ − Θ*_te,tr (Θ*_tr,tr + σI)⁻¹) Y,
    with the ridge σ the paper inserts where Θ* is singular (ordered phase)."""
    eye = np.eye(theta_train_train.shape[0])
    y = np.asarray(y_train, float)
    now = theta_test_train @ np.linalg.solve(theta_train_train + ridge * eye, y)
    limit = theta_star_test_train @ np.linalg.solve(theta_star_train_train + ridge * eye, y)
    return now - limit
