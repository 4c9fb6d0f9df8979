"""Spec-level analyses: the fixed-point analysis of every repeat block of a spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.compile.graph import node_attrs, spec_graph
from workbench.errors import TheoryError, UnsupportedError
from workbench.nodes.base import blocks, has_batch_statistics
from workbench.precision import F64, Context
from workbench.spec.model import Spec
from workbench.theory.block_orbit import OrbitAnalysis, analyze_orbit
from workbench.theory.fc_fixed_points import FixedPointAnalysis, analyze_cycle
from workbench.theory.fc_maps import body_steps


@dataclass
class SpecAnalysis:
    """One analysis per repeat block: the FC cycle theory's where the body is dense/conv and
    act (FixedPointAnalysis), else the orbit of the block's own rules (OrbitAnalysis); blocks
    whose rules refuse the analysis are listed in skipped with the reason."""

    name: str
    blocks: list[FixedPointAnalysis | OrbitAnalysis]
    skipped: list[dict] = field(default_factory=list)
    precision: str = "float64"

    def to_dict(self) -> dict:
        return {
            "spec": self.name,
            "precision": self.precision,
            "blocks": [b.to_dict() for b in self.blocks],
            "skipped": list(self.skipped),
        }


def analyze_spec(spec: Spec, ctx: Context = F64, progress: bool = False) -> SpecAnalysis:
    """Fixed points, susceptibilities, depth scales and phase of each repeat block (batch
    norm, residual and layernorm bodies: the orbit of their rules, in float64, with a
    progress bar per orbit when ``progress``)."""
    analysed: list = []
    skipped = []
    graph = None
    for block in blocks(spec.layers):
        try:
            steps = body_steps(block.body)
        except UnsupportedError:
            graph = spec_graph(spec) if graph is None else graph
            try:
                attrs = node_attrs(graph, block.path)
                found = analyze_orbit(block.path, attrs, block.times, progress=progress)
            except (UnsupportedError, TheoryError) as err:
                skipped.append({"path": block.path, "reason": err.message})
                continue
            if has_batch_statistics(block.body):
                _add_population_chi_1(spec, found)
            if not ctx.fast_float64:
                found.notes.append("iterated in float64 (the orbit's rules include float64-only "
                                   "ones such as batch norm's)")  # fmt: skip
            analysed.append(found)
            continue
        analysed.append(analyze_cycle(steps, ctx, block.path))
    return SpecAnalysis(spec.name, analysed, skipped, ctx.describe())


def _add_population_chi_1(spec: Spec, found: OrbitAnalysis) -> None:
    """A batch-normalised block's χ₁: its gradient growth per pass under the paper's
    population statistics (``theory.population_growth``), or a note saying why not."""
    from workbench.theory.population_growth import population_chi_1

    try:
        found.chi_1 = population_chi_1(spec, found.path)
    except (UnsupportedError, TheoryError) as err:
        found.notes.append(f"chi_1 (population statistics) not computed: {err.message}")
        return
    found.notes.append(
        "chi_1: gradient growth per pass with the data distribution's batch statistics "
        "(mean_field_batchnorm eqs. 13-22); >= 1 at every gamma"
    )
