"""Mean-field workbench: the Python API.

    import workbench as wb
    spec = wb.load_spec("derivations/tanh-fc-critical.yaml")
    wb.analyze_spec(spec, wb.context(30)).to_dict()
    wb.critical_point(wb.parse_activation("tanh"), 0.05)

Names are imported on first use, so ``import workbench`` (and the CLI) start quickly.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load_spec": "workbench.compile",
    "spec_from_dict": "workbench.compile",
    "build_spec": "workbench.compile",
    "spec_graph": "workbench.compile",
    "parse_activation": "workbench.activations",
    "expect": "workbench.gaussian",
    "expect1": "workbench.gaussian",
    "context": "workbench.precision",
    "F64": "workbench.precision",
    "Mp": "workbench.precision",
    "analyze_spec": "workbench.analysis",
    "analyze_cycle": "workbench.theory.fc_fixed_points",
    "single_step": "workbench.theory.fc_maps",
    "body_steps": "workbench.theory.fc_maps",
    "critical_point": "workbench.theory.critical",
    "critical_line": "workbench.theory.critical",
    "evolve_kernel": "workbench.theory.evolution",
    "input_kernel": "workbench.theory.evolution",
    "network_kernels": "workbench.theory.evaluate",
    "ntk_spectrum": "workbench.theory.spectrum",
    "conv_modes": "workbench.theory.spectrum",
    "mean_predictor": "workbench.theory.spectrum",
    "prediction_gap": "workbench.theory.spectrum",
    "derive": "workbench.theory.derive",
    "build_network": "workbench.sim.network",
    "init_linear_": "workbench.sim.init",
    "init_conv_": "workbench.sim.init",
    "run_suite": "workbench.validation.runner",
    "time_budget": "workbench.theory.pace",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
