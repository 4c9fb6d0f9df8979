"""The simulator: networks from specs, initialisations (xiao2018 Algorithms 1 and 2), probes
checked against exact identities and against the theory as the width grows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spec_factory import SPEC_FILES
from torch import nn

from workbench.activations import parse_activation
from workbench.compile import load_spec, spec_from_dict
from workbench.precision import F64
from workbench.sim import probes
from workbench.sim.init import (
    delta_orthogonal_kernel,
    init_conv_,
    init_linear_,
    orthogonal_conv_kernel,
)
from workbench.sim.network import build_network
from workbench.theory.evolution import evolve_kernel, input_kernel
from workbench.theory.fc_maps import single_step

SPECS = SPEC_FILES


def fc_spec(act="tanh", width=8, depth=3, sw2=1.5, sb2=0.1, init="gaussian", d=None):
    return spec_from_dict(
        {
            "name": "fc",
            "input": {"shape": [d or width]},
            "defaults": {"sigma_w2": sw2, "sigma_b2": sb2},
            "layers": [
                {"dense": {"width": width, "init": init}},
                {
                    "repeat": {
                        "times": depth,
                        "body": [{"act": act}, {"dense": {"width": width, "init": init}}],
                    }
                },
            ],
        }
    )


@pytest.mark.parametrize(
    "name",
    ["linear", "relu", "tanh", "erf", "sigmoid", "arctan", "softsign", "gelu", "swish",
     "softplus", "max(x, 0.1*x) + min(x, 0)", "step(x) * x**2 - sqrt(2) * sign(x)"],
)  # fmt: skip
def test_torch_activation_is_the_theory_phi(name):
    phi = parse_activation({"expr": name} if "x" in name else name)
    x = torch.linspace(-40, 40, 4001, dtype=torch.float64)
    for h in (phi, phi.derivative()):
        ref = h.numpy(x.numpy())
        assert np.allclose(h.torch(x).numpy(), ref, rtol=1e-14, atol=1e-14), h.name
    assert phi.torch(x.float()).dtype == torch.float32


def _circular(x, weight):
    pads = []
    for k in reversed(weight.shape[2:]):
        pads += [(k - 1) // 2, k - 1 - (k - 1) // 2]
    conv = nn.functional.conv2d if weight.dim() == 4 else nn.functional.conv1d
    return conv(nn.functional.pad(x, pads, mode="circular"), weight)


@pytest.mark.parametrize(
    "size, c_in, c_out", [((3, 3), 8, 8), ((5, 3), 4, 16), ((4, 4), 6, 6), ((3,), 5, 7)]
)
def test_orthogonal_kernels_preserve_norms(size, c_in, c_out):
    """‖K ∗ x‖²/c_out = ‖x‖²/c_in under circular padding for Algorithm 1 and Algorithm 2
    kernels (c_in ≤ c_out: they are isometries up to the per-unit scale √(c_out/c_in))."""
    gen = torch.Generator().manual_seed(1)
    for make in (orthogonal_conv_kernel, delta_orthogonal_kernel):
        weight = make(size, c_in, c_out, generator=gen)
        x = torch.randn(4, c_in, *([9] * len(size)), generator=gen, dtype=torch.float64)
        ratio = _circular(x, weight).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
        isometry = torch.full((4,), (c_out / c_in) ** 0.5, dtype=torch.float64)
        assert torch.allclose(ratio, isometry, atol=1e-6), make.__name__


def test_algorithm_one_kernel_is_not_a_delta():
    """Algorithm 1 spreads the kernel over its taps (otherwise it would be Algorithm 2)."""
    weight = orthogonal_conv_kernel((3, 3), 16, 16, generator=torch.Generator().manual_seed(0))
    energy = weight.pow(2).sum(dim=(0, 1))
    assert (energy > 0.01 * energy.sum()).sum() >= 5


def test_practitioner_helpers_on_torch_layers():
    gen = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular", dtype=torch.float64)
    init_conv_(conv, sigma_w2=2.0, sigma_b2=0.0, kind="orthogonal", generator=gen)
    x = torch.randn(3, 6, 10, 10, dtype=torch.float64, generator=gen)
    ratio = conv(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, 2.0**0.5), atol=1e-6)
    linear = init_linear_(nn.Linear(5, 9, dtype=torch.float64), 1.7, 0.0, "orthogonal", gen)
    gram = linear.weight.T @ linear.weight
    assert torch.allclose(gram, 1.7 * 9 / 5 * torch.eye(5, dtype=torch.float64), atol=1e-12)


def test_gaussian_weights_have_the_stated_variance():
    """Weights N(0, σ_w²/fan_in): the sample variance of 2·10⁵ entries lies within its 99.9%
    interval (relative standard error √(2/n))."""
    net = build_network(fc_spec(width=100, depth=1, sw2=2.5, d=200), ensemble=10, seed=3)
    weight = net.layers[0].weight
    n = weight.numel()
    assert abs(weight.var().item() / (2.5 / 200) - 1) < 3.3 * (2 / n) ** 0.5


def test_seed_reproduces_and_members_differ():
    spec = load_spec(SPECS / "conv2d_resnet.yaml")
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    a = build_network(spec, width=8, ensemble=2, seed=5)(x)
    b = build_network(spec, width=8, ensemble=2, seed=5)(x)
    c = build_network(spec, width=8, ensemble=2, seed=6)(x)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == (2, 3, 10) and not torch.allclose(a[0], a[1])


def test_batch_norm_uses_batch_statistics():
    spec = spec_from_dict(
        {"name": "bn", "input": {"shape": [5]}, "defaults": {"sigma_w2": 1.0, "sigma_b2": 0.3},
         "layers": [{"dense": {"width": 6}}, {"bn": {"gamma": 2.0, "beta": 0.5}}]}
    )  # fmt: skip
    out = build_network(spec, ensemble=3)(torch.randn(64, 5, dtype=torch.float64))
    assert torch.allclose(out.mean(dim=1), torch.full((3, 6), 0.5, dtype=torch.float64))
    assert torch.allclose(
        out.var(dim=1, unbiased=False), torch.full((3, 6), 4.0, dtype=torch.float64)
    )


def test_fisher_power_iteration_equals_ntk_eigenvalue():
    """Two routes to λ_max of the empirical Fisher: matrix-free power iteration, and the largest
    eigenvalue of the (B·K) × (B·K) empirical NTK divided by B."""
    spec = fc_spec(width=7, depth=2, d=6)
    net = build_network(spec, ensemble=2, seed=1)
    x = torch.randn(4, 6, dtype=torch.float64)
    for parameterization in ("standard", "ntk"):
        theta = probes.empirical_ntk(net, x, parameterization).reshape(2, 28, 28)
        exact = torch.linalg.eigvalsh(theta)[:, -1] / 4
        power = probes.fisher_max_eigenvalue(net, x, parameterization)
        assert torch.allclose(power, exact, rtol=1e-8)


def test_linear_orthogonal_network_is_an_isometry():
    """Linear activations and square orthogonal weights (σ_w² = 1, σ_b² = 0): every Jacobian
    singular value is 1 and the normalized sensitivity χˡ (labatie2019 eq. 3) stays 1."""
    net = build_network(fc_spec("linear", 12, 4, 1.0, 0.0, "orthogonal"), ensemble=2)
    x = torch.randn(10, 12, dtype=torch.float64)
    sv = probes.jacobian_singular_values(net, x[0])
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-12)
    m = probes.moments(net, x)
    assert torch.allclose(m.chi, torch.ones_like(m.chi), atol=1e-9)
    assert torch.allclose(m.snr, m.snr[:, :1].expand_as(m.snr), rtol=1e-9)


def test_monte_carlo_q_converges_to_theory_like_one_over_root_width():
    """q at the last layer of a tanh net against the recursion for the same inputs: the RMS
    error over 48 networks shrinks with the width N roughly like N^(-1/2)."""
    x = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    steps = single_step("tanh", 1.5, 0.1)
    theory = evolve_kernel(steps, input_kernel(x.numpy(), 1.5, 0.1), 3, F64).q[-1]
    widths, errors = [32, 128, 512], []
    for width in widths:
        net = build_network(fc_spec(width=width, depth=3, d=16), ensemble=48, seed=width)
        q = probes.layer_kernels(net, x).q[:, -1].numpy()  # (E, B)
        errors.append(np.sqrt(np.mean((q - theory) ** 2)))
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.75 < slope < -0.3, (errors, slope)


def test_gradient_norms_and_ntk_shapes():
    net = build_network(fc_spec(width=9, depth=3, d=4), ensemble=3)
    x = torch.randn(5, 4, dtype=torch.float64)
    labels, norms = probes.gradient_norms(net, x)
    assert len(labels) == 4 and norms.shape == (3, 4) and (norms > 0).all()
    theta = probes.empirical_ntk(net, x)
    assert theta.shape == (3, 5, 9, 5, 9)
    flat = theta.reshape(3, 45, 45)
    assert torch.allclose(flat, flat.transpose(1, 2)) and torch.linalg.eigvalsh(flat).min() > -1e-10
