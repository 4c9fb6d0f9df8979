"""The dense node: its kernel rule against Monte-Carlo of its own torch module, Gaussian and
orthogonal, with fan-in below (10 → 256), equal to (256 → 256) and above (256 → 64) the
fan-out."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.compile import spec_from_dict
from workbench.theory.evaluate import network_kernels


def dense_spec(init, widths=(256, 256, 64), phi="tanh"):
    layers = []
    for i, w in enumerate(widths):
        if i:
            layers.append({"act": phi})
        layers.append({"dense": {"width": w, "init": init}})
    return spec_from_dict(
        {
            "name": f"dense-{init}",
            "input": {"shape": [10]},
            "defaults": {"sigma_w2": 1.6, "sigma_b2": 0.1},
            "layers": layers,
        }
    )


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_kernel_rule_matches_its_torch_module(init, sampled_kernels, agreement):
    """Output NNGP of 5 inputs against 160 simulated networks; the scale check sees 5%."""
    spec = dense_spec(init)
    x = np.random.default_rng(0).standard_normal((5, 10))
    theory = network_kernels(spec, x, ntk=False).nngp
    samples = sampled_kernels(spec, x, ensemble=160)
    result = agreement(theory, samples, allowance=0.01)
    assert result["entries"] and result["scale"], result
    assert result["power"] < 0.05, result


def test_orthogonal_first_layer_keeps_the_stated_variance(sampled_kernels, agreement):
    """One orthogonal layer 10 → 512: q¹ = σ_w² ‖x‖²/10 + σ_b² per output unit, as for a
    Gaussian layer (it was fan_in/fan_out = 10/512 of that before the scaling fix)."""
    spec = dense_spec("orthogonal", widths=(512,))
    x = np.random.default_rng(2).standard_normal((3, 10))
    theory = network_kernels(spec, x, ntk=False).nngp
    result = agreement(theory, sampled_kernels(spec, x, ensemble=32), allowance=0.01)
    assert result["entries"] and result["scale"] and result["power"] < 0.05, result
