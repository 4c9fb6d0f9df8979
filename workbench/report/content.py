"""What a derivation report says, gathered from the public API (never computed a second way):
the spec, its stages, every stage's recursion (``derive``), the fixed-point analysis
(``analyze_spec``), qˡ/cˡ against depth (``evolve_kernel``), the phase diagram
(``critical_line``), conv modes (``conv_modes``), the NTK spectrum (``ntk_spectrum``), the
weight-gradient norms against depth (``gradient_profile``) and the normalised sensitivity
(``moment_profile``).

A section that does not apply to the spec is kept as one line saying why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import TheoryError, UnsupportedError, WorkbenchError

EVOLUTION_INPUTS = 8  # random inputs whose qˡ, cˡ are followed
EVOLUTION_MAX_DEPTH = 10_000
SPECTRUM_M, SPECTRUM_C0 = 8, 0.5
SENSITIVITY_INPUTS = 8


@dataclass
class Section:
    """One part of the report: a title, its data (None when it does not apply) and why not."""

    key: str
    title: str
    data: Any = None
    missing: str | None = None


@dataclass
class ReportContent:
    spec_name: str
    spec_text: str
    sections: list[Section] = field(default_factory=list)

    def section(self, key: str) -> Section | None:
        """The section ``key``, None when the report has none (validation without --validate)."""
        return next((s for s in self.sections if s.key == key), None)


def gather(
    spec: Any, spec_text: str, ctx: Any, seed: int, progress: Any, validate: bool = False,
    sweep: Any = None,
) -> ReportContent:  # fmt: skip
    """Every section of the report for ``spec`` (``progress(label)`` is called per step);
    ``validate`` adds the Monte-Carlo section (``monte_carlo.validate``), ``sweep`` (a
    directory of ``workbench sweep``) the trainability sweep's heat map and cells."""
    content = ReportContent(spec.name, spec_text)
    sections = [
        ("stages", "Stages", _stages),
        ("recursions", "Recursions", _recursions),
        ("fixed_points", "Fixed points, susceptibilities and depth scales", _fixed_points),
        ("evolution", "Signal propagation against depth", _evolution),
        ("phase", "Phase diagram", _phase),
        ("modes", "Depth scales per Fourier mode", _modes),
        ("spectrum", "NTK spectrum against depth", _spectrum),
        ("gradients", "Gradients against depth", _gradients),
        ("sensitivity", "Normalised sensitivity against depth", _sensitivity),
    ]
    if validate:
        sections.append(("validation", "Monte-Carlo validation", _validation))
    if sweep is not None:
        from workbench.sweep.summary import read_sweep

        found = read_sweep(sweep)  # before any work: a wrong directory fails at once
        sections.append(("sweep", "Sweep over the grid", lambda *_: found))
    for key, title, make in sections:
        progress(title)
        try:
            content.sections.append(Section(key, title, make(spec, ctx, seed)))
        except (UnsupportedError, TheoryError) as err:
            content.sections.append(Section(key, title, missing=err.message))
    return content


def _stages(spec: Any, ctx: Any, seed: int) -> list[dict]:
    from workbench.compile.summary import summarize

    return summarize(spec)


def _recursions(spec: Any, ctx: Any, seed: int) -> list[dict]:
    from workbench.theory.derive import derive

    return derive(spec).to_dict(latex=True)["stages"]


def _fixed_points(spec: Any, ctx: Any, seed: int) -> dict:
    from workbench.analysis import analyze_spec

    result = analyze_spec(spec, ctx).to_dict()
    if not result["blocks"] and not result["skipped"]:
        raise UnsupportedError("the spec has no repeat block to analyse")
    return result


def _fc(spec: Any):
    from workbench.theory.fc_maps import fc_chain

    return fc_chain(spec)


def _evolution(spec: Any, ctx: Any, seed: int) -> dict:
    """qˡ of each input and cˡ of each pair through the FC recursion, inputs drawn with ``seed``."""
    from workbench.compile.summary import total_depth
    from workbench.theory.evolution import evolve_kernel, input_kernel

    try:
        first, steps = _fc(spec)
    except UnsupportedError:
        return _block_evolution(spec, seed)
    if not steps:
        raise UnsupportedError("a single weight layer has no depth to propagate through")
    depth = min(total_depth(spec), EVOLUTION_MAX_DEPTH)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((EVOLUTION_INPUTS, int(np.prod(spec.input_shape))))
    kernel = input_kernel(x, float(first.sigma_w2), float(first.sigma_b2))
    evolution = evolve_kernel(steps, kernel, depth)
    return {"depth": depth, "q": evolution.q, "c": evolution.c, "inputs": EVOLUTION_INPUTS,
            "seed": seed, "notes": list(evolution.notes)}  # fmt: skip


def _block_evolution(spec: Any, seed: int) -> dict:
    """For specs outside the FC chain (conv, bn, residual...): the first repeat block's own
    rules iterated from an equicorrelated batch (``block_orbit.orbit``)."""
    from workbench.compile.graph import node_attrs, spec_graph
    from workbench.nodes.base import blocks
    from workbench.theory.block_orbit import BATCH, C0, orbit

    block = next(iter(blocks(spec.layers)), None)
    if block is None:
        raise UnsupportedError("no repeat block and not a dense/act chain: nothing to follow")
    passes = min(block.times, EVOLUTION_MAX_DEPTH)
    q, c = orbit(block.path, node_attrs(spec_graph(spec), block.path), passes)
    note = (f"{block.path}: means over a batch of {BATCH} inputs (and their pixels) of q^l and "
            f"of the correlation between distinct inputs, from q⁰ = 1, c⁰ = {C0} at the block's "
            f"input, by the block's own rules; {len(q)} of {block.times} passes (the orbit stops "
            "once it has settled)")  # fmt: skip
    return {"depth": len(q), "q": q[:, None], "c": c[:, None], "inputs": BATCH, "seed": seed,
            "notes": [note]}  # fmt: skip


def _phase(spec: Any, ctx: Any, seed: int) -> dict:
    """The critical line of the spec's one repeated activation, with the spec's point."""
    from workbench.nodes.base import blocks
    from workbench.theory.critical import critical_line
    from workbench.theory.fc_maps import body_steps

    block = next(iter(blocks(spec.layers)), None)
    if block is None:
        raise UnsupportedError("the spec has no repeat block, so no phase to place it in")
    steps = body_steps(block.body)
    if len(steps) != 1:
        raise UnsupportedError(f"{block.path}: a phase diagram needs one dense+act per pass")
    step = steps[0]
    sw2, sb2 = float(step.sigma_w2), float(step.sigma_b2)
    grid = np.linspace(0.0, max(0.3, 2 * sb2), 25)
    if step.phi.positive_homogeneity() == 1:  # relu-like: critical only at σ_b² = 0 (one point)
        grid = np.zeros(1)
    try:
        line = critical_line(step.phi, list(grid))
    except WorkbenchError as err:
        raise UnsupportedError(f"no critical line for {step.phi.name}: {err.message}") from None
    return {"activation": step.phi.name, "sigma_w2": sw2, "sigma_b2": sb2,
            "line": [p.to_dict() for p in line]}  # fmt: skip


def _modes(spec: Any, ctx: Any, seed: int) -> list[dict]:
    from workbench.theory.spectrum import conv_modes

    return [t.to_dict() for t in conv_modes(spec)]


def _spectrum(spec: Any, ctx: Any, seed: int) -> dict:
    from workbench.compile.summary import total_depth
    from workbench.theory.spectrum import ntk_spectrum

    top = max(2, min(total_depth(spec), 1000))
    depths = sorted({int(d) for d in np.unique(np.geomspace(1, top, 12).round())})
    return ntk_spectrum(spec, SPECTRUM_M, SPECTRUM_C0, depths).to_dict()


def _gradients(spec: Any, ctx: Any, seed: int) -> dict:
    """The backward order parameters (``gradient_profile``) of one Gaussian input: every weight
    layer's log ‖∂L/∂Wˡ‖²/‖∂L/∂W^L‖², and a table of about a dozen layers (left out for specs
    with batch norm, whose backward rule needs a batch and sampling)."""
    from workbench.nodes.base import flat_nodes, module_of
    from workbench.theory.backward import gradient_profile

    if any(getattr(module_of(n), "MIN_BATCH", 1) > 1 for n in flat_nodes(spec.layers)):
        raise UnsupportedError(
            "batch norm's backward rule is sampled over batch vectors (minutes for a report); "
            "run `workbench gradients SPEC --m 4`"
        )
    x = np.random.default_rng(seed).standard_normal((1, *spec.input_shape))
    result = gradient_profile(spec, x).to_dict()
    rows = result["layers"]
    shown = sorted({int(i) for i in np.geomspace(1, len(rows), 12).round() - 1})
    logs = [r["log_ratio"] for r in rows]
    return {"inputs": 1, "seed": seed, "notes": result["notes"], "log_ratio": logs,
            "rows": [rows[i] for i in shown]}  # fmt: skip


def _sensitivity(spec: Any, ctx: Any, seed: int) -> dict:
    """labatie2019's normalised sensitivity in the wide limit (``moment_profile``) on
    SENSITIVITY_INPUTS random inputs: χˡ and its increments per layer, a table of about a
    dozen layers and the regimes met."""
    from workbench.theory.moments import moment_profile
    from workbench.validation.quantities import make_inputs

    count = min(SENSITIVITY_INPUTS, spec.input_shape[0]) if len(spec.input_shape) == 1 else 4
    x = make_inputs(spec, {"count": count, "seed": seed}).numpy()
    profile = moment_profile(spec, x)
    result = profile.to_dict()
    rows = result["layers"]
    if not rows:
        raise UnsupportedError("the spec has no activation or residual unit to measure χ at")
    shown = sorted({int(i) for i in np.geomspace(1, len(rows), 12).round() - 1})
    regimes = sorted({r["regime"] for r in rows})
    return {"inputs": count, "seed": seed, "notes": result["notes"], "regimes": regimes,
            "chi": [r["chi"] for r in rows], "rows": [rows[i] for i in shown],
            "power_law": result.get("power_law")}  # fmt: skip


def _validation(spec: Any, ctx: Any, seed: int) -> dict:
    from workbench.report.monte_carlo import validate

    return validate(spec, seed)
