"""Flatten's readout: flattened features keep their own pixel's kernel until the dense layer
averages them (xiao_bahri eq. 18)."""

from __future__ import annotations

import numpy as np
from spec_factory import make_spec

import workbench.gaussian as gaussian
from workbench.activations import parse_activation
from workbench.theory.evaluate import network_kernels


def test_activation_between_flatten_and_dense_acts_per_pixel():
    """Flattened features (channel, pixel) carry their own pixel's kernel, so tanh between a
    flatten and a dense averages T(K_α) over pixels α, not T of the averaged kernel (which
    differs by 3% here: pixels of very different scales)."""
    conv = {"conv": {"channels": 8, "kernel": 3}}
    prefix = [conv, {"act": "relu"}, conv]
    s = make_spec([*prefix, "flatten", {"act": "tanh"}, {"dense": {"width": 4}}], [3, 6], 2.5, 0.05)
    x = np.random.default_rng(14).standard_normal((5, 3, 6)) * np.array([0.2, 1, 3, 0.5, 2, 4])
    theory = network_kernels(s, x).nngp
    pixels = network_kernels(make_spec(prefix, [3, 6], 2.5, 0.05), x, mode="full").nngp
    tanh = parse_activation("tanh")
    per_pixel = []
    for alpha in range(6):
        k = pixels[:, :, alpha, alpha]
        q = np.diag(k)
        per_pixel.append(gaussian.expect(tanh, tanh, q[:, None] + 0 * k, k, q[None, :] + 0 * k))
    expected = 2.5 * np.mean(per_pixel, axis=0) + 0.05
    assert np.allclose(theory, expected, rtol=1e-12)
    averaged_first = network_kernels(make_spec([*prefix, "flatten"], [3, 6], 2.5, 0.05), x).nngp
    q = np.diag(averaged_first)
    wrong = 2.5 * gaussian.expect(tanh, tanh, q[:, None] + 0 * averaged_first, averaged_first,
                                  q[None, :] + 0 * averaged_first) + 0.05  # fmt: skip
    assert np.abs(wrong - theory).max() > 0.01 * np.abs(theory).max()
