"""The conv node: its kernel rule reads the init's tap-variance profile, and agrees with
Monte-Carlo of its own torch module for every init and fan-in below, equal to and above the
fan-out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.compile import spec_from_dict
from workbench.errors import SpecError
from workbench.nodes.conv import mode_eigenvalues, tap_variances
from workbench.sim.init import orthogonal_conv_kernel
from workbench.theory.evaluate import network_kernels


def conv_spec(init, channels, kernel=3, shape=(4, 8), **extra):
    layers = []
    for i, c in enumerate(channels):
        if i:
            layers.append({"act": "tanh"})
        layers.append({"conv": {"channels": c, "kernel": kernel, "init": init, **extra}})
    return spec_from_dict(
        {
            "name": f"conv-{init}",
            "input": {"shape": list(shape)},
            "defaults": {"sigma_w2": 1.7, "sigma_b2": 0.1},
            "layers": layers,
        }
    )


def test_tap_profiles():
    one = conv_spec("delta_orthogonal", [8], kernel=[3])
    assert tap_variances(one.layers[0]) == (0.0, 1.0, 0.0)
    five = conv_spec("orthogonal", [8], kernel=5)
    assert np.allclose(tap_variances(five.layers[0]), np.array([1, 4, 6, 4, 1]) / 16)
    square = conv_spec("orthogonal", [8], kernel=3, shape=(4, 6, 6))
    v = np.array(tap_variances(square.layers[0])).reshape(3, 3)
    assert np.allclose(v, np.outer([1, 2, 1], [1, 2, 1]) / 16) and math.isclose(v.sum(), 1)
    assert np.allclose(tap_variances(conv_spec("gaussian", [8]).layers[0]), 1 / 3)


@pytest.mark.parametrize("size", [(3,), (5,), (7,), (3, 3)])
def test_orthogonal_profile_is_what_algorithm_1_draws(size):
    """E‖K[β]‖²_F / c_in over 48 kernels of xiao2018 Algorithm 1 (64 channels) against the
    binomial profile: within 4.5 standard errors per tap, and the uniform profile rejected."""
    gen = torch.Generator().manual_seed(0)
    draws = np.stack(
        [
            orthogonal_conv_kernel(size, 64, 64, 1.0, generator=gen).pow(2).sum((0, 1)).numpy() / 64
            for _ in range(48)
        ]
    ).reshape(48, -1)
    spec = conv_spec("orthogonal", [64], kernel=list(size), shape=(4, *[9] * len(size)))
    v = np.array(tap_variances(spec.layers[0]))
    mean, sem = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(48)
    assert (np.abs(mean - v) <= 4.5 * sem + 1e-12).all(), (mean, v)
    uniform = np.full_like(v, 1 / len(v))
    assert (np.abs(mean - uniform) > 4.5 * sem).any()


CASES = {
    # init: channels of the successive convs (input has 4): fan-in <, = and (where the
    # construction allows it) > fan-out
    "gaussian": [64, 64, 32],
    "orthogonal": [64, 64],
    "delta_orthogonal": [64, 64, 32],
}


@pytest.mark.parametrize("init", list(CASES))
def test_kernel_rule_matches_its_torch_module(init, sampled_kernels, agreement):
    """Full pixel-pair NNGP of a tanh CNN (1D, 8 pixels, random non-stationary inputs, so the
    tap profile matters) against 320 simulated networks; the scale check can see a 5% error,
    and the wrong profile (the uniform one, what the theory used before) is rejected (320
    networks keep that power under any seed stream)."""
    spec = conv_spec(init, CASES[init])
    x = np.random.default_rng(0).standard_normal((3, *spec.input_shape))
    theory = network_kernels(spec, x, ntk=False, mode="full").nngp
    samples = sampled_kernels(spec, x, ensemble=320)
    result = agreement(theory, samples, allowance=0.01)
    assert result["entries"] and result["scale"], result
    assert result["power"] < 0.05, result
    if init != "gaussian":
        wrong = network_kernels(conv_spec("gaussian", CASES[init]), x, ntk=False, mode="full")
        assert not agreement(wrong.nngp, samples, allowance=0.01)["entries"]


def test_variance_vector_only_with_gaussian_init():
    with pytest.raises(SpecError, match="variance vector"):
        conv_spec("orthogonal", [8], variance=[0.25, 0.5, 0.25])


def test_mode_eigenvalues_are_the_dft_of_v():
    """λ_k = Σ_β v_β e^{−2πi k β / n} (β the tap offset from the centre): the delta kernel
    keeps every mode (λ = 1), the uniform one damps all but k = 0."""
    delta = conv_spec("delta_orthogonal", [8]).layers[0]
    assert np.allclose(mode_eigenvalues(delta, (8,)), 1)
    uniform = conv_spec("gaussian", [8]).layers[0]
    k = np.arange(8)
    assert np.allclose(mode_eigenvalues(uniform, (8,)), (1 + 2 * np.cos(2 * np.pi * k / 8)) / 3)


def test_ntk_with_a_variance_vector_matches_the_empirical_ntk():
    """NTK parameterisation with a lopsided v, pixel-pair NTK of a spatial output: tap β's
    weights carry σ_w² v_β / c_in in the simulator too (with a uniform σ_w²/(c_in·taps) there
    the empirical NTK misses the rule Θ' = K' + σ_w² A_v ⋆ Θ and this test fails)."""
    from workbench.sim import probes
    from workbench.sim.network import build_network

    def conv(channels):
        return {"conv": {"channels": channels, "kernel": 3, "variance": [0.05, 0.15, 0.8]}}

    spec = spec_from_dict(
        {
            "name": "ntk-v",
            "input": {"shape": [3, 6]},
            "defaults": {"sigma_w2": 1.5, "sigma_b2": 0.1},
            "layers": [conv(128), {"act": "erf"}, conv(1)],
        }
    )
    x = np.random.default_rng(4).standard_normal((2, 3, 6))
    theory = network_kernels(spec, x, mode="full").ntk  # (m, m, n, n)
    net = build_network(spec, ensemble=12, seed=5)
    emp = probes.empirical_ntk(net, torch.tensor(x)).reshape(12, 2, 6, 2, 6)
    emp = emp.permute(0, 1, 3, 2, 4).numpy()
    mean, sem = emp.mean(0), emp.std(0, ddof=1) / np.sqrt(12)
    assert (np.abs(theory - mean) <= 4.5 * sem + 0.03 * np.abs(theory).max()).all()


def test_strided_conv_kernel_matches_its_torch_module(sampled_kernels, agreement):
    """A stride-2 conv (mean_field_batchnorm's conv networks) keeps every second pixel of the
    circular convolution: the full pixel-pair NNGP of tanh conv → stride-2 conv (1D, 8 → 4
    pixels) against 320 simulated networks, with the power to see a 5% error."""
    spec = spec_from_dict({"name": "strided", "input": {"shape": [4, 8]},
                           "defaults": {"sigma_w2": 1.7, "sigma_b2": 0.1},
                           "layers": [{"conv": {"channels": 64, "kernel": 3}}, {"act": "tanh"},
                                      {"conv": {"channels": 64, "kernel": 3, "stride": 2,
                                                "variance": [0.5, 0.3, 0.2]}}]})  # fmt: skip
    x = np.random.default_rng(0).standard_normal((3, 4, 8))
    theory = network_kernels(spec, x, ntk=False, mode="full").nngp
    assert theory.shape == (3, 3, 4, 4)
    result = agreement(theory, sampled_kernels(spec, x, ensemble=320), allowance=0.01)
    assert result["entries"] and result["scale"] and result["power"] < 0.05, result


def test_stride_must_divide_the_spatial_size():
    assert conv_spec("gaussian", [8], shape=(4, 8), stride=2).layers[0].stride == 2
    with pytest.raises(SpecError, match=r"stride 3 does not divide the spatial size"):
        conv_spec("gaussian", [8], shape=(4, 8), stride=3)
