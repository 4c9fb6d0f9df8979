"""The report's ``--validate`` section: qˡ and cˡ of the spec's own finite-width networks
(torch, CUDA when present) against the recursion, layer by layer, with Student-t intervals.

One ensemble of VALIDATE_SAMPLES networks of width VALIDATE_WIDTH runs the spec up to
VALIDATE_DEPTH weight layers (deeper, the finite-width corrections, O(l/N), would be what is
measured); every layer's mean qˡ and cˡ over 4 inputs of pairwise correlation 0.3 is a check
(``validation.runner.compare``): 99% interval plus a stated 3% finite-width allowance."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from workbench.errors import UnsupportedError

VALIDATE_WIDTH = 512
VALIDATE_SAMPLES = 16
VALIDATE_DEPTH = 30
ALLOWANCE = 0.03
INPUTS = {"count": 4, "correlation": 0.3}


def truncated(spec: Any, depth: int) -> Any:
    """The spec's layers up to ``depth`` weight layers (the first repeat cut short)."""
    from workbench.nodes.base import has_weights, unrolled

    layers, count = [], 0
    for node in spec.layers:
        weights = sum(1 for n in unrolled([node]) if has_weights(n))
        if count + weights <= depth:
            layers.append(node)
            count += weights
            continue
        times = getattr(node, "times", None)
        per_pass = weights // times if times else 0
        if per_pass and (depth - count) // per_pass >= 1:
            layers.append(dataclasses.replace(node, times=(depth - count) // per_pass))
        break
    return dataclasses.replace(spec, layers=tuple(layers))


def validate(spec: Any, seed: int, device: str = "auto") -> dict:
    """Checks of qˡ and cˡ at every weight layer of the truncated spec."""
    from workbench.sim import probes
    from workbench.sim.network import build_network, resolve_device
    from workbench.theory.fc_maps import fc_chain
    from workbench.validation.quantities import _fc_theory, make_inputs
    from workbench.validation.runner import compare
    from workbench.validation.suite import Check

    fc_chain(spec)  # the recursion checked here is the FC one: refuse other specs clearly
    short = truncated(spec, VALIDATE_DEPTH)
    if not short.layers:
        raise UnsupportedError("the spec has no weight layer to simulate")
    start = time.perf_counter()
    x = make_inputs(short, {**INPUTS, "seed": seed})
    resolved = str(resolve_device(device))
    net = build_network(short, VALIDATE_WIDTH, VALIDATE_SAMPLES, seed, "float64", resolved)
    measured = probes.layer_kernels(net, x)
    theory = _fc_theory(short, x, -1)
    rows, cols = np.triu_indices(x.shape[0], 1)
    layers = theory.q.shape[0]
    checks = []
    for layer in range(layers):
        for quantity in ("q", "c"):
            if quantity == "q":
                value = float(theory.q[layer].mean())
                samples = measured.q[:, layer].mean(dim=1).cpu().numpy()
            else:
                value = float(theory.c[layer].mean())
                c = measured.c[:, layer].cpu().numpy()
                samples = c[:, rows, cols].mean(axis=1)
            check = Check(f"{quantity}, layer {layer}", short, quantity, VALIDATE_WIDTH,
                          VALIDATE_SAMPLES, layer, relative=ALLOWANCE)  # fmt: skip
            checks.append({**compare(check, value, samples, 0.0).to_dict(), "layer": layer})
    seconds = time.perf_counter() - start
    return {"width": VALIDATE_WIDTH, "samples": VALIDATE_SAMPLES, "layers": layers,
            "device": resolved, "allowance": ALLOWANCE, "seconds": seconds, "checks": checks,
            "passed": all(c["passed"] for c in checks)}  # fmt: skip
