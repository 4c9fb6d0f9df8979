"""Quantities a validation check can compare: each returns the theory value and one Monte-Carlo
sample per simulated network (so the interval comes from independent networks).

* ``q``, ``c`` — mean qˡ over the inputs, mean cˡ over input pairs at weight layer ``layer``
  (pabari_zhou eqs. 3–7, the spine's recursion on the same inputs).
* ``jacobian_sv2_mean``, ``jacobian_sv2_spread`` — mean and normalised variance of the squared
  singular values of the input-output Jacobian, against free probability (Pennington,
  Schoenholz & Ganguli 2017, summarised in xiao2018 §2.2.1 and pabari_zhou §3.2).
* ``norm_ratio`` — the root-mean-square per unit of h⁰ over that of x, for the first
  (bias-free) weight layer: √σ_w² exactly for orthogonal and Delta-Orthogonal kernels with
  c_in ≤ c_out (xiao2018 Algorithms 1–2, scaled to σ_w² per output unit).
* ``mode_retention`` — Fourier mode k of the pixel-correlation profile of a Delta-Orthogonal
  CNN at weight layer ``layer``, relative to layer 0 (xiao2018 §2.4): the delta kernel makes the
  theory the FC recursion on pixel pairs.
* ``gradient_slope`` — the slope of log‖∂L/∂Wˡ‖² in l, theory −log χ₁ (xiao2018 Fig. S2).
* ``fisher_lower``, ``fisher_trace``, ``fisher_lambda_max`` — the Fisher information's bounds
  (mean_field_batchnorm eq. 147) against the same gradient norms of the simulated networks,
  and the lower bound against their λ_max.
* ``gradient_rate`` — the mean rate ‖∂L/∂Wˡ‖²/‖∂L/∂Wˡ⁺¹‖² over ``fit_layers``, against the
  backward order parameters of any spec (``theory.backward``).
* ``sensitivity_increment``, ``sensitivity_tau`` — labatie2019's increments of the normalised
  sensitivity over ``fit_layers`` and the power-law exponent of a residual network
  (``validation.sensitivity``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from workbench.activations import Activation
from workbench.errors import UnsupportedError, WorkbenchError
from workbench.gaussian import expect1
from workbench.nodes.base import blocks, has_rule, has_weights, rule, unrolled
from workbench.precision import F64
from workbench.sim import probes
from workbench.sim.network import Network
from workbench.sim.streams import stream
from workbench.spec.model import Spec
from workbench.theory.evolution import evolve_kernel, input_kernel
from workbench.theory.fc_fixed_points import analyze_cycle
from workbench.theory.fc_maps import body_steps, fc_chain
from workbench.validation.suite import source_free

Quantity = Callable[..., tuple[float, np.ndarray]]


def make_inputs(spec: Spec, inputs: dict) -> torch.Tensor:
    """Inputs of the check. Flat (d,): ``count`` rows with ‖x‖²/d = ``scale`` and, when
    ``correlation`` is given, exactly that pairwise correlation. Spatial (C, *S): one image per
    ``count`` of Gaussian channels smoothed ``smooth`` times by a circular [1, 2, 1]/4 filter."""
    count, scale = int(inputs.get("count", 4)), float(inputs.get("scale", 1.0))
    gen = stream(int(inputs.get("seed", 0)), "inputs")
    shape = spec.input_shape
    if len(shape) == 1:
        d = shape[0]
        if count > d:
            raise WorkbenchError(f"{count} inputs do not fit in dimension {d}")
        basis, _ = torch.linalg.qr(torch.randn(d, count, generator=gen, dtype=torch.float64))
        rho = float(inputs.get("correlation", 0.0))
        gram = (1 - rho) * torch.eye(count, dtype=torch.float64) + rho
        x = torch.linalg.cholesky(gram) @ basis.T * (scale * d) ** 0.5
        return x
    x = torch.randn(count, *shape, generator=gen, dtype=torch.float64)
    for _ in range(int(inputs.get("smooth", 0))):
        for axis in range(2, x.dim()):
            x = (x.roll(1, axis) + 2 * x + x.roll(-1, axis)) / 4
    per_pixel = x.pow(2).mean(dim=1, keepdim=True).mean(dim=tuple(range(2, x.dim())), keepdim=True)
    return x * (scale / per_pixel).sqrt()


def _fc_theory(spec: Spec, x: torch.Tensor, layer: int):
    _require_per_pixel(spec)
    first, steps = fc_chain(spec)
    depth = len(steps) if layer < 0 else layer
    kernel = input_kernel(x.numpy(), first.sigma_w2, first.sigma_b2)
    return evolve_kernel(steps, kernel, depth, F64)


def q_quantity(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    theory = _fc_theory(check.spec, x, check.layer).q[-1].mean()
    measured = probes.layer_kernels(net, x).q[:, check.layer].mean(dim=1)
    return float(theory), measured.cpu().numpy()


def c_quantity(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    theory = _fc_theory(check.spec, x, check.layer).c[-1].mean()
    c = probes.layer_kernels(net, x).c[:, check.layer]
    rows, cols = torch.triu_indices(c.shape[-1], c.shape[-1], 1)
    return float(theory), c[:, rows, cols].mean(dim=1).cpu().numpy()


def _jacobian_theory(check, x: torch.Tensor) -> tuple[float, float]:
    """Free multiplicative convolution of the layers' factors: with W square, a factor
    σ_w² W̃W̃ᵀ has mean σ_w² and normalised variance s_W = 1 (Gaussian, Marchenko–Pastur) or 0
    (orthogonal); a factor D² = φ′(h)² has mean μ₁ = E[φ′²] and normalised variance
    μ₂/μ₁² − 1 with μ₂ = E[φ′⁴] at that layer's q. Means multiply, normalised variances add:
    returns the mean and the normalised variance (variance / mean²) of the squared singular
    values."""
    spec = check.spec
    steps = fc_chain(spec)[1]
    evolution = _fc_theory(spec, x[:1], -1)
    denses = [n for n in unrolled(spec.layers) if has_weights(n)]
    mean, spread = 1.0, 0.0
    for dense in denses:
        mean *= dense.sigma_w2
        spread += 0.0 if dense.init == "orthogonal" else 1.0
    for step, q in zip(steps, evolution.q[:-1, 0]):
        d = step.phi.derivative()
        mu1, mu2 = _moment(d, q, 2), _moment(d, q, 4)
        mean *= mu1
        spread += mu2 / mu1**2 - 1
    return mean, spread


def _moment(d: Activation, q: float, power: int) -> float:
    """E[φ′(h)^power], h ~ N(0, q)."""
    return expect1(Activation(f"({d.name})^{power}", d.expr**power), q)


_SINGULAR: list = []  # one entry (net, inputs, sv²): a suite's checks of one net share it


def _jacobian_sv2(net: Network, x: torch.Tensor) -> np.ndarray:
    """Squared singular values of every member's Jacobian at every input: (E, inputs, n)."""
    if not (_SINGULAR and _SINGULAR[0] is net and torch.equal(_SINGULAR[1], x)):
        sv = [probes.jacobian_singular_values(net, row).pow(2).cpu().numpy() for row in x]
        _SINGULAR[:] = [net, x.clone(), np.stack(sv, axis=1)]
    return _SINGULAR[2]


def jacobian_sv2_mean(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """Mean squared singular value of the input-output Jacobian, per network averaged over
    the check's inputs."""
    return _jacobian_theory(check, x)[0], _jacobian_sv2(net, x).mean(axis=2).mean(axis=1)


def jacobian_sv2_spread(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """Normalised variance of the squared singular values, variance / mean² per Jacobian:
    the free-probability sum of the layers' normalised variances. The ratio cancels a
    network's overall gain, so it spreads across networks far less than either moment."""
    sv2 = _jacobian_sv2(net, x)
    ratio = sv2.var(axis=2) / sv2.mean(axis=2) ** 2
    return _jacobian_theory(check, x)[1], ratio.mean(axis=1)


def norm_ratio(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    first = next(n for n in unrolled(check.spec.layers) if has_weights(n))
    if first.sigma_b2 != 0:
        raise WorkbenchError("norm_ratio needs sigma_b2 = 0 on the first layer")
    with torch.no_grad(), net.tape() as tape:
        net(x)
    h = next(t for _, kind, t in tape.entries if kind in probes.WEIGHT_KINDS)
    per_unit_h = h.flatten(2).norm(dim=2) / h.flatten(2).shape[-1] ** 0.5
    per_unit_x = x.to(h).flatten(1).norm(dim=1) / x.flatten(1).shape[-1] ** 0.5
    ratio = per_unit_h / per_unit_x
    return first.sigma_w2**0.5, ratio.mean(dim=1).cpu().numpy()


def _mode_profile(corr: np.ndarray, mode: int) -> float:
    """Fourier mode k of ρ(δ) = mean_α c(α, α + δ) (periodic 1D pixels)."""
    n = corr.shape[-1]
    rho = np.array([np.mean([corr[a, (a + s) % n] for a in range(n)]) for s in range(n)])
    return float(np.real(np.sum(rho * np.exp(-2j * np.pi * mode * np.arange(n) / n))))


def mode_retention(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    if len(check.spec.input_shape) != 2 or x.shape[0] != 1:
        raise WorkbenchError("mode_retention takes one 1D image: input (C, n), inputs.count 1")
    mode = int(check.options.get("mode", 1))
    pixels = x[0].T  # (n, C): pixels as inputs, channels as features
    evolution = _fc_theory(check.spec, pixels, check.layer)
    start = _mode_profile(evolution.correlation(0), mode)
    theory = _mode_profile(evolution.correlation(evolution.depth), mode) / start
    with torch.no_grad(), net.tape() as tape:
        net(x)
    h = [t for _, kind, t in tape.entries if kind == "conv"][check.layer][:, 0]  # (E, C, n)
    k = torch.einsum("eca,ecb->eab", h, h) / h.shape[1]
    q = torch.diagonal(k, dim1=1, dim2=2)
    corr = (k / torch.sqrt(q.unsqueeze(2) * q.unsqueeze(1))).cpu().numpy()
    return theory, np.array([_mode_profile(c, mode) / start for c in corr])


def gradient_slope(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    block = next(blocks(check.spec.layers))
    steps = body_steps(block.body)
    chi1 = analyze_cycle(steps, F64).chi_1
    lo, hi = _layer_range(check, _weight_layers(check.spec), (10, -10))
    _, norms = probes.gradient_norms(net, x)
    logs = norms.log().cpu().numpy()[:, lo:hi]
    layers = np.arange(logs.shape[1])
    slopes = np.polyfit(layers, logs.T, 1)[0]
    return float(-np.log(float(chi1))), slopes


def per_fan_in_norms(net: Network, x: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """Every weight layer's ‖∂L/∂Wˡ‖² divided by its fan-in per tap (the simulated widths
    differ from the spec's; the theory's unit-summed G̃ does not), per network."""
    labels, norms = probes.gradient_norms(net, x)
    fans = [m.weight.shape[2] for m in net.modules() if getattr(m, "kind", None) in
            probes.WEIGHT_KINDS]  # fmt: skip
    return labels, norms.cpu().numpy() / np.array(fans, float)


def gradient_rate(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """The mean over consecutive weight layers l in ``fit_layers`` of the gradient-norm rate
    ‖∂L/∂Wˡ‖² / ‖∂L/∂Wˡ⁺¹‖² (per fan-in), against the backward order parameters
    (``theory.backward``; χ₁ where the forward pass sits at its fixed point). Averaging the
    rate over many layer pairs of one network averages their nearly independent finite-width
    fluctuations, so few networks resolve a few per cent."""
    from workbench.theory.backward import gradient_profile

    statistics = check.options.get("bn_statistics", "batch")
    profile = gradient_profile(check.spec, x.numpy(), bn_statistics=statistics)
    logs = np.array([float(w.log_norm) - np.log(w.fan_in) for w in profile.layers])
    labels, norms = per_fan_in_norms(net, x)
    if labels != [w.path for w in profile.layers]:
        raise WorkbenchError("the simulator's weight layers differ from the theory's")
    lo, hi = _layer_range(check, len(labels) - 1)
    theory = float(np.mean(np.exp(logs[lo:hi] - logs[lo + 1 : hi + 1])))
    rates = norms[:, lo:hi] / norms[:, lo + 1 : hi + 1]
    return theory, rates.mean(axis=1)


_FISHER_THEORY: dict = {}  # one entry: a suite's checks of one spec share its bounds


def _fisher(check, x: torch.Tensor):
    from workbench.theory.fisher import fisher_bounds, resized

    statistics = check.options.get("bn_statistics", "batch")
    spec = resized(check.spec, check.width)
    key = (source_free(spec), x.numpy().tobytes(), statistics)
    if key not in _FISHER_THEORY:
        _FISHER_THEORY.clear()
        _FISHER_THEORY[key] = fisher_bounds(spec, x.numpy(), statistics=statistics)
    return _FISHER_THEORY[key]


def fisher_lower(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """The Fisher's lower bound ‖E_x ∇f_k(x)‖² (mean_field_batchnorm Claim 3.1) against the
    same gradient norm of every simulated network, over every parameter."""
    return _fisher(check, x).lower, probes.fisher_lower_norm(net, x).cpu().numpy()


def fisher_trace(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """The Fisher's trace E_x Σ_k ‖∇f_k(x)‖², its upper bound on λ_max, against the
    simulated networks'."""
    return _fisher(check, x).upper, probes.fisher_trace(net, x).cpu().numpy()


def fisher_lambda_max(check, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """The lower bound against the largest eigenvalue of the simulated networks' empirical
    Fisher (power iteration); the check's ``relation: at_least`` asks λ_max ≥ the bound (and
    the trace check bounds it above). Power iteration's Rayleigh quotients approach λ_max
    from below, so stopping at a relative change of 1e-4 can only make the check stricter."""
    lam = probes.fisher_max_eigenvalue(net, x, "standard", 100, 1e-4)
    return _fisher(check, x).lower, lam.cpu().numpy()


def _layer_range(check, pairs: int, default: tuple[int, int] | None = None) -> tuple[int, int]:
    """``fit_layers: [lo, hi]`` as a range of the network's ``pairs`` (consecutive weight-layer
    pairs, or weight layers); a negative hi counts from the end."""
    lo, hi = check.options.get("fit_layers", default or [0, pairs])
    hi = hi + pairs if hi < 0 else hi
    if not 0 <= lo < hi <= pairs:
        raise WorkbenchError(
            f"check '{check.name}': fit_layers {check.options.get('fit_layers')} is outside "
            f"the {pairs} weight layers (or pairs of consecutive ones) of its spec",
            hint=f"use 0 <= lo < hi <= {pairs}",
        )
    return lo, hi


QUANTITIES: dict[str, Quantity] = {
    "q": q_quantity,
    "c": c_quantity,
    "jacobian_sv2_mean": jacobian_sv2_mean,
    "jacobian_sv2_spread": jacobian_sv2_spread,
    "norm_ratio": norm_ratio,
    "mode_retention": mode_retention,
    "gradient_slope": gradient_slope,
    "gradient_rate": gradient_rate,
    "fisher_lower": fisher_lower,
    "fisher_trace": fisher_trace,
    "fisher_lambda_max": fisher_lambda_max,
    "sensitivity_increment": lambda *a: _sensitivity().sensitivity_increment(*a),
    "sensitivity_tau": lambda *a: _sensitivity().sensitivity_tau(*a),
}


def _weight_layers(spec: Spec) -> int:
    return sum(1 for node in unrolled(spec.layers) if has_weights(node))


def _check_layer(check) -> None:
    """``layer`` indexes the weight layers (negative from the end)."""
    count = _weight_layers(check.spec)
    if not -count <= check.layer < count:
        raise WorkbenchError(
            f"layer {check.layer} is out of range: the spec has {count} weight layers",
            hint=f"use a layer from 0 to {count - 1} (or -1 for the last)",
        )


def _check_fc(check) -> None:
    _check_layer(check)
    _require_per_pixel(check.spec)
    fc_chain(check.spec)  # the FC recursion must cover the spec


def _check_mode_retention(check) -> None:
    _check_fc(check)
    if len(check.spec.input_shape) != 2 or int(check.inputs.get("count", 4)) != 1:
        raise WorkbenchError("mode_retention takes one 1D image: input (C, n), inputs.count 1")


def _check_norm_ratio(check) -> None:
    first = next((n for n in unrolled(check.spec.layers) if has_weights(n)), None)
    if first is None or first.sigma_b2 != 0:
        raise WorkbenchError("norm_ratio needs sigma_b2 = 0 on the first weight layer")


def _check_gradient_slope(check) -> None:
    block = next(blocks(check.spec.layers), None)
    if block is None:
        raise WorkbenchError("gradient_slope needs a repeat block (its χ₁ is the theory)")
    body_steps(block.body)
    _layer_range(check, _weight_layers(check.spec), (10, -10))


def _check_statistics(check) -> None:
    from workbench.theory.backward import BN_STATISTICS

    if check.options.get("bn_statistics", "batch") not in BN_STATISTICS:
        raise WorkbenchError(f"options.bn_statistics is one of {', '.join(BN_STATISTICS)}")


def _check_gradient_rate(check) -> None:
    _check_statistics(check)
    _layer_range(check, _weight_layers(check.spec) - 1)


PREFLIGHT: dict[str, Callable] = {
    "q": _check_fc,
    "c": _check_fc,
    "jacobian_sv2_mean": _check_fc,
    "jacobian_sv2_spread": _check_fc,
    "norm_ratio": _check_norm_ratio,
    "mode_retention": _check_mode_retention,
    "gradient_slope": _check_gradient_slope,
    "gradient_rate": _check_gradient_rate,
    "fisher_lower": _check_statistics,
    "fisher_trace": _check_statistics,
    "fisher_lambda_max": _check_statistics,
    "sensitivity_increment": lambda check: _sensitivity().check_sensitivity(check),
    "sensitivity_tau": lambda check: _sensitivity().check_sensitivity(check),
}


def _sensitivity():
    """workbench.validation.sensitivity (imported when a check needs it: it imports this)."""
    from workbench.validation import sensitivity

    return sensitivity


def _require_per_pixel(spec: Spec) -> None:
    """The FC recursion on pixel pairs holds for convs that act on every pixel separately
    (all tap variance on one tap: init delta_orthogonal, or a one-hot variance vector)."""
    for node in unrolled(spec.layers):
        if has_rule(node, "per_pixel") and not rule(node, "per_pixel")(node):
            raise UnsupportedError(
                f"{node.path}: only delta-kernel convs reduce to the FC recursion",
                hint="use init: delta_orthogonal (or a one-hot variance vector)",
            )
