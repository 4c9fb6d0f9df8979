"""Moments of signal and noise and the normalised sensitivity (labatie2019 §2–7) in the wide
limit, over the data set given by the inputs.

A small input noise dx (i.i.d., the same variance in every coordinate) is carried at first
order beside the signal x (labatie2019 eqs. 1–2: dyˡ = ωˡ ∗ dxˡ⁻¹, dxˡ = φ′(yˡ) ⊙ dyˡ). With
many units per layer the noise's per-unit second moments n_a(α) = E[dx_a(α)²] of each input a
and pixel α follow their own forward recursion — every node kind's ``noise`` rule — while the
signal's are the recorded forward kernels (``Evaluator.record``). The noise stays uncorrelated
between inputs and between pixels (each weight has mean zero), so n is a vector, not a kernel.

From both, at every node (labatie2019 §3.1; ϕ̂ centres over the inputs and pixels):

* μ₂(xˡ) = mean_(a,α) K_(a,α)(a,α) − mean_(a,α),(b,β) K_(a,α)(b,β), the centred signal variance;
* μ₂(dxˡ) = mean n;
* χˡ = (μ₂(dxˡ)/μ₂(xˡ))^{1/2} / (μ₂(dx⁰)/μ₂(x⁰))^{1/2} (eq. 3), kept as log χ for any depth;
* r_eff(xˡ) = tr Ĉ / λ_max(Ĉ) of the centred kernel Ĉ = H K H, whose non-zero eigenvalues are
  those of the feature covariance (§3.1).

Weight layers leave χ unchanged in this limit (both variances scale by σ_w², the bias cancels
in the centring), so χ moves at the activations and batch norms: δχ = δ_BN χ · δ_φ χ
(Theorem 3). Batch norm uses its statistics as constants, as the paper's test mode does
(labatie2019 §6): dz = γ dy/s_c with s_c² the channel's variance over the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.compile.graph import spec_graph
from workbench.errors import TheoryError, UnsupportedError
from workbench.nodes.base import NodeBase, module_of, rule
from workbench.precision import F64, Context, context
from workbench.spec.model import Spec
from workbench.theory.evaluate import Evaluator, TapeEntry, checked_inputs, initial_state
from workbench.theory.state import KernelState

FLAT_INCREMENT = 0.01  # δχ − 1 below this: the layer is pseudo-linear (labatie2019 Theorem 2)
NORMALIZATIONS = ("batch", "population")


@dataclass
class Noise:
    """Per-unit second moments of the noise, n · e^log_scale, per input (and pixel) in the
    layout of the state's own variances: (m,) or (m, *S). ``field``: the noise on the field of
    a pending activation chain (its composed φ′ applies to it)."""

    n: np.ndarray
    log_scale: Any = 0.0
    field: np.ndarray | None = None


@dataclass(frozen=True)
class MomentRow:
    """One node's output: its signal's second moment ν₂(x) and centred variance μ₂(x),
    log μ₂(dx) (relative to the input noise's), log χ, and the signal's effective rank (None
    where not computed)."""

    path: str
    role: str  # the node kind's SENSITIVITY_ROLE: activation, batch_norm, sum, or ""
    nu2_signal: Any
    mu2_signal: Any
    log_mu2_noise: Any
    log_chi: Any
    r_eff: float | None = None
    source: int = 0  # the row of the node's input (0: the network's input)


@dataclass
class NoiseWalk:
    """The forward walk of the noise over a recorded pass; every node reports one row."""

    ev: Evaluator
    ctx: Context = F64
    rows: list[MomentRow] = field(default_factory=list)
    log_base: Any = 0.0  # ½ log(μ₂(dx⁰)/μ₂(x⁰))
    with_rank: bool = True

    def frame(self, frame: list[TapeEntry], noise: Noise, suffix: str) -> Noise:
        """Forward through one recorded frame (a graph's nodes in order)."""
        for entry in frame:
            source = len(self.rows) - 1
            noise = rule(entry.node, "noise")(entry.node, noise, self, entry, suffix)
            noise = _rescaled(noise, entry.node)
            if not getattr(module_of(entry.node), "UNROLLS", False):  # a repeat's passes report
                self.report(entry, noise, suffix, source)
        return noise

    def once(self, entry: TapeEntry, key: str, compute: Any) -> Any:
        """``compute()`` once per recorded entry (repeated passes reuse it)."""
        key = "noise:" + key
        if key not in entry.cache:
            entry.cache[key] = compute()
        return entry.cache[key]

    def realized(self, state: KernelState) -> KernelState:
        return self.ev.realized(state)

    def report(self, entry: TapeEntry, noise: Noise, suffix: str, source: int) -> None:
        """The row of ``entry``'s output (its signal from the recorded state)."""
        nu2, mu2, rank = self.once(entry, "signal", lambda: signal_moments(
            self.realized(entry.out), self.with_rank))  # fmt: skip
        log_noise = self.ctx.log(_mean(noise.n)) + noise.log_scale
        log_chi = (log_noise - self.ctx.log(mu2)) / 2 - self.log_base
        role = getattr(module_of(entry.node), "SENSITIVITY_ROLE", "")
        self.rows.append(MomentRow(entry.node.path + suffix, role, nu2, mu2,
                                   log_noise, log_chi, rank, source))  # fmt: skip


def _mean(values: np.ndarray) -> Any:
    flat = np.ravel(values)
    return flat.sum() / len(flat)


def _rescaled(noise: Noise, node: NodeBase) -> Noise:
    """Keep float64 n within (1e-100, 1e100) by moving a power of 2 into log_scale."""
    values = np.asarray(noise.n, dtype=float) if noise.n.dtype != object else None
    if values is None:
        return noise
    if not np.isfinite(values).all() or not (values >= 0).all():
        raise TheoryError(
            f"{node.path}: the noise second moments are not finite and positive",
            hint="this indicates a numerical problem; please report the spec",
        )
    largest = float(values.max()) if values.size else 0.0
    if largest == 0 or 1e-100 < largest < 1e100 or noise.field is not None:
        return noise
    exponent = math.frexp(largest)[1]
    return replace(noise, n=np.ldexp(values, -exponent),
                   log_scale=noise.log_scale + exponent * math.log(2))  # fmt: skip


def sample_kernel(state: KernelState) -> np.ndarray:
    """The realized signal's second moments over the samples (input, pixel) as one matrix
    (labatie2019's ϕ̂ centres it over the data and the positions: H K H).
    Flattened features are features per (channel, pixel), sampled over the inputs only."""
    if state.mode == "flat":
        k = state.nngp
    elif state.mode == "full":
        k = state.as_matrices(state.nngp)[0]
    elif state.flattened:  # (m, m, *S): every pixel's features, sampled over the inputs
        k = state.nngp.reshape(state.m, state.m, -1).sum(axis=2) / state.ctx.num(state.pixels)
    else:
        raise UnsupportedError(
            "the moments of a spatial signal need its pixel-pair kernels",
            hint="moments use the full spatial mode; a pixel-diagonal state cannot centre "
            "over the positions",
        )
    return k


def signal_moments(state: KernelState, with_rank: bool = True) -> tuple[Any, Any, float | None]:
    """(ν₂(x), μ₂(x), r_eff(x)) of a realized state: the mean diagonal of its sample kernel
    K and of the centred Ĉ = H K H, and tr Ĉ / λ_max(Ĉ) (float64)."""
    k = sample_kernel(state)
    size = k.shape[0]
    rows = k.sum(axis=1) / size
    c = k - rows[:, None] - rows[None, :] + rows.sum() / size
    nu2 = np.trace(k) / size
    mu2 = np.trace(c) / size
    if not mu2 > 0:
        raise TheoryError(
            "the signal has no variance over the inputs: every input maps to the same point, "
            "so the normalised sensitivity is undefined",
            hint="give at least two distinct inputs",
        )
    rank = None
    if with_rank:
        eig = np.linalg.eigvalsh(np.asarray(c, dtype=float))
        rank = float(eig.sum() / eig[-1]) if eig[-1] > 0 else None
    return nu2, mu2, rank


@dataclass(frozen=True)
class SensitivityLayer:
    """One layer of labatie2019's analysis: it ends at an activation (or a residual unit's
    sum). δχ from the previous layer's end, δ_BN χ over a batch norm inside it, δ_φ χ over
    the activation (Theorem 3), and the regime its increments put it in."""

    path: str
    role: str  # activation (a feed-forward layer) or sum (a residual unit)
    chi: Any
    delta_chi: Any
    delta_chi_bn: Any | None
    delta_chi_phi: Any | None
    r_eff: float | None
    regime: str = ""


@dataclass
class MomentProfile:
    """Every node's moments (``rows``) and labatie2019's per-layer increments (``layers``)."""

    spec: str
    rows: list[MomentRow]
    layers: list[SensitivityLayer]
    ctx: Context = F64
    notes: list[str] = field(default_factory=list)

    def power_law(self) -> dict[str, Any] | None:
        """For residual networks (labatie2019 Theorem 4): τ fitted to log χˡ against log l
        over the residual units' outputs (the later half), and Theorem 4's
        τ = ½(⟨δχ⟩^{2H} − 1) from the mean feed-forward increment inside the branches."""
        sums = [i for i, layer in enumerate(self.layers) if layer.role == "sum"]
        if len(sums) < 4:
            return None
        units = [self.layers[i] for i in sums]
        inner = [layer for layer in self.layers[sums[0] + 1 : sums[-1]] if layer.role != "sum"]
        per_unit = len(inner) // (len(sums) - 1)
        logs = np.array([float(u.log_chi) for u in _unit_rows(self, units)])
        depth = np.arange(1, len(logs) + 1, dtype=float)
        half = slice(len(logs) // 2, None)
        tau_fit = float(np.polyfit(np.log(depth[half]), logs[half], 1)[0])
        result: dict[str, Any] = {"units": len(units), "tau_fit": tau_fit, "branch_layers":
                                  per_unit}  # fmt: skip
        if per_unit:
            mean_increment = float(np.exp(np.mean([math.log(float(layer.delta_chi))
                                                   for layer in inner])))  # fmt: skip
            result["mean_branch_increment"] = mean_increment
            result["tau_theorem4"] = 0.5 * (mean_increment ** (2 * per_unit) - 1)
        return result

    def to_dict(self) -> dict[str, Any]:
        def number(v: Any) -> float | None:
            return None if v is None else float(v)

        layers = [
            {
                "path": layer.path,
                "role": layer.role,
                "chi": number(layer.chi),
                "delta_chi": number(layer.delta_chi),
                "delta_chi_bn": number(layer.delta_chi_bn),
                "delta_chi_phi": number(layer.delta_chi_phi),
                "r_eff": layer.r_eff,
                "regime": layer.regime,
            }
            for layer in self.layers
        ]
        rows = [
            {
                "path": r.path,
                "role": r.role,
                "mu2": float(r.mu2_signal),
                "log_mu2_noise": float(r.log_mu2_noise),
                "log_chi": float(r.log_chi),
                "r_eff": r.r_eff,
            }  # fmt: skip
            for r in self.rows
        ]
        out = {"spec": self.spec, "precision": self.ctx.describe(), "layers": layers,
               "nodes": rows, "notes": list(self.notes)}  # fmt: skip
        law = self.power_law()
        if law is not None:
            out["power_law"] = law
        return out


def _unit_rows(profile: MomentProfile, units: list[SensitivityLayer]) -> list[MomentRow]:
    paths = {u.path for u in units}
    return [r for r in profile.rows if r.path in paths]


@dataclass(frozen=True)
class Span:
    """Where one of labatie2019's layers sits in the node rows (indices; 0 is the input):
    its end, its start (the previous layer's end, or a residual unit's input), the node
    before its activation chain (δ_φ χ) and its batch norm (δ_BN χ from the start)."""

    end: int
    start: int
    phi_from: int | None = None
    bn: int | None = None


def layer_spans(rows: list[MomentRow]) -> list[Span]:
    """labatie2019's layers in the node rows: each ends at an activation (the last of a
    chain) or at a residual unit's sum."""
    spans: list[Span] = []
    last_end = 0
    for i, row in enumerate(rows):
        if i == 0:
            continue
        chained = (i + 1 < len(rows) and rows[i + 1].role == "activation"
                   and rows[i + 1].source == i)  # fmt: skip
        if row.role == "sum":
            spans.append(Span(i, row.source))
            last_end = i
        elif row.role == "activation" and not chained:
            first = i
            while rows[rows[first].source].role == "activation" and rows[first].source > last_end:
                first = rows[first].source
            before = rows[first].source
            bn = before if rows[before].role == "batch_norm" else None
            spans.append(Span(i, last_end, before, bn))
            last_end = i
    return spans


def span_increments(span: Span, log_chi: list[Any], exp: Any) -> tuple[Any, Any, Any, Any]:
    """(χ, δχ, δ_BN χ, δ_φ χ) of one layer from every row's log χ (numbers at any precision,
    or arrays over simulated networks: ``exp`` of the matching kind)."""
    at = log_chi
    delta_bn = None if span.bn is None else exp(at[span.bn] - at[span.start])
    delta_phi = None if span.phi_from is None else exp(at[span.end] - at[span.phi_from])
    return exp(at[span.end]), exp(at[span.end] - at[span.start]), delta_bn, delta_phi


def sensitivity_layers(rows: list[MomentRow], ctx: Context) -> list[SensitivityLayer]:
    """labatie2019's layers (``layer_spans``) with their increments and regimes (of this
    wide-limit profile): ``power law`` for a residual unit (Theorem 4's dilution); else
    ``pseudo-linear`` where δχ < 1 + FLAT_INCREMENT (Theorem 2's limit, one-dimensional signal
    ahead), ``transient growth`` where log δχ still decays by more than 1% a layer (vanilla
    nets, Theorem 2), and ``exploding sensitivity`` where it has settled above
    (χˡ ≥ e^{γl})."""
    log_chi = [row.log_chi for row in rows]
    layers = []
    for span in layer_spans(rows):
        row = rows[span.end]
        values = span_increments(span, log_chi, ctx.exp)
        layers.append(SensitivityLayer(row.path, row.role, *values, row.r_eff))
    return _with_regimes(layers)


def _with_regimes(layers: list[SensitivityLayer]) -> list[SensitivityLayer]:
    """Residual units: ``power law``; a layer with δχ < 1 + FLAT_INCREMENT: ``pseudo-linear``;
    the others take the regime of the feed-forward layers' tail: ``exploding sensitivity``
    where log δχ has settled (its last value ≥ 90% of its value a quarter of the layers
    earlier), else ``transient growth`` (decaying towards 1, as in vanilla nets)."""
    logs = [math.log(float(layer.delta_chi)) for layer in layers if layer.role != "sum"]
    settled = bool(logs) and logs[-1] >= 0.9 * logs[-1 - max(1, len(logs) // 4)
                                                   if len(logs) > 1 else -1]  # fmt: skip
    growing = "exploding sensitivity" if settled else "transient growth"
    out = []
    for layer in layers:
        if layer.role == "sum":
            regime = "power law"
        elif float(layer.delta_chi) < 1 + FLAT_INCREMENT:
            regime = "pseudo-linear"
        else:
            regime = growing
        out.append(replace(layer, regime=regime))
    return out


def moment_profile(
    spec: Spec,
    inputs: np.ndarray,
    digits: int | None = None,
    normalization: str = "batch",
    with_rank: bool = True,
) -> MomentProfile:
    """labatie2019's moments of ``spec`` on the data set ``inputs`` (m, *input_shape), in the
    wide limit: a recorded forward pass (spatial specs in the full pixel-pair mode), then
    every node's ``noise`` rule forward. ``normalization``: batch norm's statistics over the
    inputs (``batch``, the default: the inputs are the data set) or the population model of
    mean_field_batchnorm (``population``)."""
    if normalization not in NORMALIZATIONS:
        raise TheoryError(f"normalization must be one of {', '.join(NORMALIZATIONS)}")
    inputs, mode = checked_inputs(spec, inputs, "full")
    if inputs.shape[0] < 2:
        raise TheoryError("the moments need a data set of at least two inputs",
                          hint="the signal's variance is taken over the inputs")  # fmt: skip
    ctx = context(digits)
    ev = Evaluator("ntk")
    ev.normalization = normalization
    state = initial_state(inputs, mode, False, ctx)
    walk = NoiseWalk(ev, ctx, with_rank=with_rank)
    with ctx.active():
        out, frame = ev.record(spec_graph(spec), state)
        ev.learning = False
        nu2, mu2, rank = signal_moments(state, with_rank)
        noise = Noise(ctx.array(np.ones(state.own_variances(state.nngp).shape)))
        walk.log_base = (ctx.log(_mean(noise.n)) - ctx.log(mu2)) / 2
        walk.rows.append(MomentRow("input", "input", nu2, mu2, ctx.log(_mean(noise.n)),
                                   ctx.num(0), rank))  # fmt: skip
        walk.frame(frame, noise, "")
    rows = walk.rows
    return MomentProfile(spec.name, rows, sensitivity_layers(rows, ctx), ctx,
                         list(out.notes))  # fmt: skip


def phi_increment(phi: Any, q: Any = 1.0, ctx: Context = F64) -> Any:
    """δ_φ χ of an activation on a centred Gaussian field of variance q (labatie2019
    Theorem 3's exp m_φ): (q E[φ′(z)²] / Var φ(z))^{1/2}. For relu it is the paper's
    (1 − 2E[z⁺]E[z⁻]/q)^{−1/2} = (π/(π − 1))^{1/2}, derived here: Var z⁺ = q/2 − E[z⁺]² and
    E[φ′²] = 1/2."""
    from workbench.gaussian import expect, expect1

    d = phi.derivative()
    with ctx.active():
        q = ctx.num(q)
        e_dphi2 = expect(d, d, q, q, q, ctx)
        e_phi2 = expect(phi, phi, q, q, q, ctx)
        e_phi = expect1(phi, q, ctx)
        variance = e_phi2 - e_phi * e_phi
        if not variance > 0:
            raise TheoryError(f"{phi.name} is constant on the field: δ_φ χ is undefined")
        return ctx.sqrt(q * e_dphi2 / variance)
