"""The Monte-Carlo side of labatie2019's moments, beside the wide-limit theory
(``theory.moments``): finite-width networks of the same spec propagate the same inputs and a
first-order input noise (``sim.probes.moments``), every layer's output is measured, and the
theory's layers (``layer_spans``) are read off the same rows.

Batch norm runs with its statistics held fixed (detached), the paper's test mode (§6).
Theorem 1's finite-width effects — the slow log-diffusion of ν₂(xˡ) and μ₂(dxˡ) — are
measured as the drift and diffusion of their logs around the wide-limit values, per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.sim import probes
from workbench.sim.network import Network, build_network
from workbench.spec.model import Spec
from workbench.theory.moments import MomentProfile, layer_spans, span_increments


@dataclass
class MeasuredMoments:
    """Per row (the input, then every layer's output) and simulated network: log χ, log ν₂
    of the signal, log μ₂ of the noise (relative to the input noise's) and r_eff."""

    labels: list[str]
    kinds: list[str]
    log_chi: np.ndarray  # (rows, networks)
    log_nu2: np.ndarray
    log_mu2_noise: np.ndarray
    r_eff: np.ndarray
    networks: int


def build_moment_network(spec: Spec, width: int | None, networks: int, seed: int = 0,
                         device: str = "auto") -> Network:  # fmt: skip
    """``networks`` independent networks of ``spec`` (``width`` units/channels per hidden
    layer) with batch norm's statistics fixed: labatie2019's test mode."""
    return build_network(spec, width, networks, seed, "float64", device, "fixed")


def measure_moments(net: Network, x: np.ndarray | torch.Tensor, seed: int = 0) -> MeasuredMoments:
    """Propagate the data set ``x`` and a first-order input noise through every network."""
    m = probes.moments(net, torch.as_tensor(np.asarray(x, float)), seed=seed)
    noise = m.noise_mu2.log().cpu().numpy().T
    return MeasuredMoments(
        m.labels,
        m.kinds,
        m.chi.log().cpu().numpy().T,
        m.nu2.log().cpu().numpy().T,
        noise - noise[:1],
        m.r_eff.cpu().numpy().T,
        net.ensemble,
    )


def _summary(values: np.ndarray | None) -> dict[str, float] | None:
    """Mean and standard error over the networks."""
    if values is None or not np.isfinite(values).all():
        return None
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return {"mean": float(values.mean()), "se": se}


def simulated_layers(profile: MomentProfile, measured: MeasuredMoments) -> list[tuple]:
    """Per theory layer, the simulated networks' (χ, δχ, δ_BN χ, δ_φ χ), each an array over
    the networks (None where the layer has no such step), read off the theory's rows."""
    index = {label: i for i, label in enumerate(measured.labels)}
    missing = [row.path for row in profile.rows if row.path not in index]
    if missing:
        raise WorkbenchError(
            f"the simulator did not record {', '.join(missing[:3])}: the theory's rows and the "
            "simulated network's layers differ"
        )
    logs = list(measured.log_chi[[index[row.path] for row in profile.rows]])
    return [span_increments(span, logs, np.exp) for span in layer_spans(profile.rows)]


def compare(profile: MomentProfile, measured: MeasuredMoments) -> list[dict[str, Any]]:
    """Per theory layer: its wide-limit χ, δχ, δ_BN χ, δ_φ χ and r_eff beside the simulated
    networks' (mean ± standard error), read off the same rows."""
    index = {label: i for i, label in enumerate(measured.labels)}
    out = []
    for mc, layer in zip(simulated_layers(profile, measured), profile.layers):
        out.append(
            {
                "path": layer.path,
                "regime": layer.regime,
                "theory": {
                    "chi": float(layer.chi),
                    "delta_chi": float(layer.delta_chi),
                    "delta_chi_bn": None
                    if layer.delta_chi_bn is None
                    else float(layer.delta_chi_bn),
                    "delta_chi_phi": None
                    if layer.delta_chi_phi is None
                    else float(layer.delta_chi_phi),
                    "r_eff": layer.r_eff,
                },  # fmt: skip
                "monte_carlo": {
                    "chi": _summary(mc[0]),
                    "delta_chi": _summary(mc[1]),
                    "delta_chi_bn": _summary(mc[2]),
                    "delta_chi_phi": _summary(mc[3]),
                    "r_eff": _summary(measured.r_eff[index[layer.path]]),
                },
            }
        )
    return out


def log_diffusion(profile: MomentProfile, measured: MeasuredMoments) -> dict[str, Any]:
    """labatie2019 Theorem 1 at finite width: over the layers' ends l, the simulated
    log ν₂(xˡ) and log μ₂(dxˡ) minus their wide-limit values; the drift is the slope in l of
    their mean over networks, the diffusion the slope of their variance (both 0 in the wide
    limit; the theorem: a small negative drift and a small positive diffusion)."""
    index = {label: i for i, label in enumerate(measured.labels)}
    spans = layer_spans(profile.rows)
    if len(spans) < 3:
        return {}
    ends = [profile.rows[s.end] for s in spans]
    depth = np.arange(1, len(ends) + 1, dtype=float)
    result: dict[str, Any] = {"layers": len(ends)}
    theory_nu2 = np.array([math.log(float(r.nu2_signal)) for r in ends])
    theory_noise = np.array([float(r.log_mu2_noise) for r in ends])
    base_nu2 = math.log(float(profile.rows[0].nu2_signal))
    for name, sim, theory in (
        ("log_nu2", measured.log_nu2 - measured.log_nu2[:1], theory_nu2 - base_nu2),
        ("log_mu2_noise", measured.log_mu2_noise, theory_noise),
    ):
        rows = sim[[index[r.path] for r in ends]] - theory[:, None]  # (layers, networks)
        drift = float(np.polyfit(depth, rows.mean(axis=1), 1)[0])
        diffusion = float(np.polyfit(depth, rows.var(axis=1, ddof=1), 1)[0])
        result[name] = {"drift_per_layer": drift, "diffusion_per_layer": diffusion,
                        "last_mean": float(rows[-1].mean()),
                        "last_variance": float(rows[-1].var(ddof=1))}  # fmt: skip
    return result


def fitted_tau(profile: MomentProfile, measured: MeasuredMoments) -> np.ndarray:
    """Per simulated network, the slope of log χˡ against log l over the later half of the
    residual units (the theory's ``power_law`` fit, on the same rows)."""
    index = {label: i for i, label in enumerate(measured.labels)}
    units = [layer.path for layer in profile.layers if layer.role == "sum"]
    if len(units) < 4:
        raise WorkbenchError("a power-law fit needs at least 4 residual units")
    logs = measured.log_chi[[index[p] for p in units]]  # (units, networks)
    depth = np.log(np.arange(1, len(units) + 1, dtype=float))
    half = slice(len(units) // 2, None)
    return np.polyfit(depth[half], logs[half], 1)[0]


# --- validation quantities (validate/sensitivity.yaml) ---------------------------------------

INCREMENTS = ("delta_chi", "delta_chi_bn", "delta_chi_phi")


def _profile_and_measured(check: Any, net: Network, x: torch.Tensor):
    from workbench.theory.moments import moment_profile

    return moment_profile(check.spec, x.numpy()), measure_moments(net, x)


def _feed_forward(profile: MomentProfile) -> list[int]:
    return [i for i, layer in enumerate(profile.layers) if layer.role != "sum"]


def sensitivity_increment(check: Any, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """The mean over the feed-forward layers in ``fit_layers`` of one increment
    (``options.increment``: δχ, δ_BN χ or δ_φ χ; labatie2019 Theorems 2–3) in the wide limit,
    against each simulated network's mean over the same layers."""
    from workbench.validation.quantities import _layer_range

    key = check.options.get("increment", "delta_chi")
    profile, measured = _profile_and_measured(check, net, x)
    chosen = _feed_forward(profile)
    lo, hi = _layer_range(check, len(chosen))
    chosen = chosen[lo:hi]
    theory = [getattr(profile.layers[i], key) for i in chosen]
    if any(v is None for v in theory):
        raise WorkbenchError(f"check '{check.name}': some of its layers have no {key} "
                             "(delta_chi_bn needs a batch norm before the activation)")  # fmt: skip
    position = INCREMENTS.index(key) + 1
    simulated = simulated_layers(profile, measured)
    return float(np.mean([float(v) for v in theory])), np.mean(
        [simulated[i][position] for i in chosen], axis=0)  # fmt: skip


def sensitivity_tau(check: Any, net: Network, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """The power-law exponent of χˡ over a residual network's units (labatie2019 Theorem 4),
    fitted over the later half of the units: the wide-limit recursion's against each simulated
    network's."""
    profile, measured = _profile_and_measured(check, net, x)
    law = profile.power_law()
    if law is None:
        raise WorkbenchError(f"check '{check.name}': its spec has fewer than 4 residual units")
    return law["tau_fit"], fitted_tau(profile, measured)


def check_sensitivity(check: Any) -> None:
    """Preflight: batch norm in its test mode, a known increment, a layer range that fits
    (from the wide-limit profile on the check's inputs)."""
    from workbench.nodes.base import has_batch_statistics
    from workbench.theory.moments import moment_profile
    from workbench.validation.quantities import _layer_range, make_inputs

    if has_batch_statistics(check.spec.layers) and check.options.get("bn_statistics") != "fixed":
        raise WorkbenchError(
            f"check '{check.name}': labatie2019's batch norm holds its statistics fixed",
            hint="add `options: {bn_statistics: fixed}`",
        )
    key = check.options.get("increment", "delta_chi")
    if key not in INCREMENTS:
        raise WorkbenchError(f"check '{check.name}': options.increment is one of "
                             f"{', '.join(INCREMENTS)}, not {key!r}")  # fmt: skip
    if check.quantity == "sensitivity_increment":
        x = make_inputs(check.spec, check.inputs).numpy()
        profile = moment_profile(check.spec, x, with_rank=False)
        _layer_range(check, len(_feed_forward(profile)))
