"""The report's ``--validate`` section: qˡ and cˡ of the spec's own finite-width networks
(torch, CUDA when present) against the one evaluator's kernels, weight layer by weight layer,
with Student-t intervals — for any spec the simulator builds (dense and conv, batch norm with
the batch's statistics, residual, pool, flatten).

One ensemble of VALIDATE_SAMPLES networks runs the spec up to VALIDATE_DEPTH weight layers
(deeper, the finite-width corrections, O(l/N), would be what is measured), VALIDATE_WIDTH
units (dense) or VALIDATE_CHANNELS channels (specs with spatial inputs); every weight layer's
mean qˡ (per unit: averaged over channels and positions) and mean cˡ over 4 inputs of pairwise
correlation 0.3 is a check (``validation.runner.compare``): 99% interval plus a stated 3%
finite-width allowance."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from workbench.errors import TheoryError, UnsupportedError
from workbench.theory.evaluate import layer_kernels_theory

VALIDATE_WIDTH = 512
VALIDATE_CHANNELS = 128
VALIDATE_SAMPLES = 16
VALIDATE_DEPTH = 30
ALLOWANCE = 0.03
INPUTS = {"count": 4, "correlation": 0.3}


def weight_count(nodes: Any) -> int:
    """Weight layers a run through ``nodes`` passes: bodies included (a residual's), each
    repeat's body counted once per pass."""
    from workbench.nodes.base import has_weights, module_of

    total = 0
    for node in nodes:
        inner = weight_count(getattr(node, "body", ()))
        unrolls = getattr(module_of(node), "UNROLLS", False)
        total += inner * node.times if unrolls else inner + has_weights(node)
    return total


def truncated(spec: Any, depth: int) -> Any:
    """The spec's layers up to ``depth`` weight layers (the first repeat that would pass it
    cut to the whole passes that fit; what follows it dropped)."""
    from workbench.nodes.base import module_of

    layers, count = [], 0
    for node in spec.layers:
        weights = weight_count([node])
        if count + weights <= depth:
            layers.append(node)
            count += weights
            continue
        if getattr(module_of(node), "UNROLLS", False):
            per_pass = weights // node.times
            if per_pass and (depth - count) // per_pass >= 1:
                layers.append(dataclasses.replace(node, times=(depth - count) // per_pass))
        break
    return dataclasses.replace(spec, layers=tuple(layers))


def validate(spec: Any, seed: int, device: str = "auto") -> dict:
    """Checks of qˡ and cˡ at every weight layer of the truncated spec."""
    from workbench.sim import probes
    from workbench.sim.network import build_network, resolve_device
    from workbench.validation.quantities import make_inputs
    from workbench.validation.runner import compare
    from workbench.validation.suite import Check

    short = truncated(spec, VALIDATE_DEPTH)
    if not short.layers:
        raise UnsupportedError("the spec has no weight layer to simulate")
    width = VALIDATE_WIDTH if len(spec.input_shape) == 1 else VALIDATE_CHANNELS
    start = time.perf_counter()
    x = make_inputs(short, {**INPUTS, "seed": seed})
    labels, theory = layer_kernels_theory(short, x.numpy())
    resolved = str(resolve_device(device))
    net = build_network(short, width, VALIDATE_SAMPLES, seed, "float64", resolved)
    measured = probes.layer_kernels(net, x)
    if measured.labels != labels:
        raise TheoryError(
            "the simulated network's weight layers differ from the theory's: "
            f"{measured.labels[:3]}… against {labels[:3]}…",
            hint="this is a bug in the simulator or the evaluator; please report the spec",
        )
    rows, cols = np.triu_indices(x.shape[0], 1)
    q_sim = np.diagonal(measured.kernels.cpu().numpy(), axis1=-2, axis2=-1)  # (E, L, m)
    corr_sim = measured.c.cpu().numpy()
    checks = []
    for layer, (label, k) in enumerate(zip(labels, theory)):
        q = np.diag(k)
        values = {"q": (float(q.mean()), q_sim[:, layer].mean(axis=1)),
                  "c": (float((k / np.sqrt(np.outer(q, q)))[rows, cols].mean()),
                        corr_sim[:, layer][:, rows, cols].mean(axis=1))}  # fmt: skip
        for quantity, (value, samples) in values.items():
            check = Check(f"{quantity}, layer {layer} ({label})", short, quantity, width,
                          VALIDATE_SAMPLES, layer, relative=ALLOWANCE)  # fmt: skip
            checks.append({**compare(check, value, samples, 0.0).to_dict(), "layer": layer})
    seconds = time.perf_counter() - start
    return {"width": width, "samples": VALIDATE_SAMPLES, "layers": len(labels),
            "device": resolved, "allowance": ALLOWANCE, "seconds": seconds, "checks": checks,
            "passed": all(c["passed"] for c in checks)}  # fmt: skip
