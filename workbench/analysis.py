"""Spec-level analyses: the fixed-point analysis of every repeat block of a spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.errors import UnsupportedError
from workbench.nodes.base import blocks
from workbench.precision import F64, Context
from workbench.spec.model import Spec
from workbench.theory.fc_fixed_points import FixedPointAnalysis, analyze_cycle
from workbench.theory.fc_maps import body_steps


@dataclass
class SpecAnalysis:
    """One FixedPointAnalysis per repeat block the FC theory covers; the others in skipped."""

    name: str
    blocks: list[FixedPointAnalysis]
    skipped: list[dict] = field(default_factory=list)
    precision: str = "float64"

    def to_dict(self) -> dict:
        return {
            "spec": self.name,
            "precision": self.precision,
            "blocks": [b.to_dict() for b in self.blocks],
            "skipped": list(self.skipped),
        }


def analyze_spec(spec: Spec, ctx: Context = F64) -> SpecAnalysis:
    """Fixed points, susceptibilities, depth scales and phase of each repeat block."""
    analysed, skipped = [], []
    for block in blocks(spec.layers):
        try:
            steps = body_steps(block.body)
        except UnsupportedError as err:
            skipped.append({"path": block.path, "reason": err.message})
            continue
        analysed.append(analyze_cycle(steps, ctx, block.path))
    return SpecAnalysis(spec.name, analysed, skipped, ctx.describe())
