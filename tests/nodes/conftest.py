"""Monte-Carlo of one node's own torch module against its kernel rule.

``sampled_kernels(spec, x, ensemble, seed)`` simulates ``ensemble`` independent networks of
the spec (each at its own widths) and returns every member's output second moments, averaged
over the output channels: (E, m, m) for flat outputs, (E, m, m, *S, *S) for spatial ones.

``agreement(theory, samples, allowance)`` tests them in two ways and reports both:
* per entry: |theory − mean| ≤ 4 sem + allowance·max|theory| (4 sem: many entries at once;
  the allowance covers the O(1/width) finite-width bias);
* the scale: r = ⟨K_e, T⟩/⟨T, T⟩ per member, whose mean must be 1 within 3.5 sem + allowance.
  ``power`` is the half-width of that interval: a theory 5% off fails when power < 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.sim.network import build_network


def _sampled_kernels(spec, x, ensemble=32, seed=1):
    net = build_network(spec, ensemble=ensemble, seed=seed)
    with torch.no_grad():
        out = net(torch.tensor(x)).numpy()  # (E, m, C, *S)
    e, m, c = out.shape[:3]
    if out.ndim == 3:
        return np.einsum("eac,ebc->eab", out, out) / c
    spatial = out.shape[3:]
    flat = out.reshape(e, m, c, -1)
    k = np.einsum("eacp,ebcq->eabpq", flat, flat) / c
    return k.reshape(e, m, m, *spatial, *spatial)


def _agreement(theory, samples, allowance=0.02):
    theory = np.asarray(theory, float)
    mean = samples.mean(0)
    sem = samples.std(0, ddof=1) / np.sqrt(len(samples))
    scale = np.abs(theory).max()
    entries_ok = bool((np.abs(theory - mean) <= 4 * sem + allowance * scale).all())
    ratio = (samples * theory).reshape(len(samples), -1).sum(1) / (theory * theory).sum()
    half_width = 3.5 * ratio.std(ddof=1) / np.sqrt(len(ratio)) + allowance
    return {
        "entries": entries_ok,
        "scale": bool(abs(ratio.mean() - 1) <= half_width),
        "ratio": float(ratio.mean()),
        "power": float(half_width),
        "worst_z": float(np.max(np.abs(theory - mean) / np.maximum(sem, 1e-300))),
    }


@pytest.fixture
def sampled_kernels():
    return _sampled_kernels


@pytest.fixture
def agreement():
    return _agreement
