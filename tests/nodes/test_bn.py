"""Batch norm's kernel rule (mean_field_batchnorm §3): its claims, the Gaussian approximation
of the activation after it, and a ResNet with batch norm inside residual blocks."""

from __future__ import annotations

import numpy as np
import pytest
from spec_factory import SPEC_FILES, make_spec

from workbench.theory.evaluate import network_kernels


@pytest.mark.parametrize("gamma", [1.0, 1.7])
def test_batch_norm_relu_recursion_matches_claims_6_1_and_6_3(gamma):
    """mean_field_batchnorm Claims 6.1 (FC) and 6.3 (CNN): after bn(γ) → relu → dense,
    q = σ_b² + σ_w² γ²/2 and q_xy = σ_b² + σ_w² γ²/(2π), the claims' averages over inputs
    (a large batch of inputs of equal norm; the batch centring leaves correlations of
    −1/(N−1) between distinct inputs, so O(1/N) is allowed in q_xy). For the CNN: the
    same-pixel entries (eq. 104's q_αβ concerns pixel pairs that the inputs' own pixel
    correlations also shape)."""
    sw2, sb2, n = 1.3, 0.2, 200
    body = [{"bn": {"gamma": gamma}}, {"act": "relu"}]
    fc = make_spec([{"dense": {"width": 16}}, *body, {"dense": {"width": 16}}], [256], sw2, sb2)
    conv = {"conv": {"channels": 8, "kernel": 3}}
    cnn = make_spec([conv, *body, conv], [64, 4], sw2, sb2)
    rng = np.random.default_rng(11)
    for s, m in ((fc, n), (cnn, 50)):
        x = rng.standard_normal((m, *s.input_shape))  # equal norms, as the claims assume
        x *= np.sqrt(x[0].size / (x**2).sum(axis=tuple(range(1, x.ndim)), keepdims=True))
        k = network_kernels(s, x, ntk=False).nngp
        if k.ndim > 2:  # CNN: same-pixel entries of the last conv's output
            k = np.diagonal(k, axis1=2, axis2=3)
        distinct = ~np.eye(m, dtype=bool)
        diag, off = k[~distinct], k[distinct]
        q, q_xy = sb2 + sw2 * gamma**2 / 2, sb2 + sw2 * gamma**2 / (2 * np.pi)
        assert np.isclose(diag.mean(), q, rtol=1e-9)  # exact: BN fixes the batch's mean square
        assert np.isclose(off.mean(), q_xy, rtol=0.01)  # measured 0.2–0.5%


@pytest.mark.parametrize("phi", ["tanh", "relu"])
def test_activation_after_batch_norm_is_the_papers_gaussian_approximation(phi):
    """After a batch norm the activation sees the field as Gaussian with mean β and covariance
    K_bn − β² (mean_field_batchnorm eqs. 56–57): the rule equals sampling that Gaussian (200k
    draws, 1.5% allowed for their noise). The exact wide-limit map normalises each channel's
    batch vector onto a sphere; sampling it shows the approximation's error falling with the
    batch size N (measured: tanh 10% at N = 5, 1.3% at N = 60; relu 2.5%, 1.0%)."""
    rng = np.random.default_rng(5)
    deviations = []
    for m, d in ((5, 64), (60, 128)):
        x = np.random.default_rng(0).standard_normal((m, d))
        pre = [{"dense": {"width": 32}}, {"bn": {"gamma": 1.2, "beta": 0.4}}]
        field = network_kernels(make_spec(pre[:1], [d]), x, ntk=False).nngp
        k_bn = network_kernels(make_spec(pre, [d]), x, ntk=False).nngp
        theory = network_kernels(make_spec([*pre, {"act": phi}], [d]), x, ntk=False).nngp
        f = np.tanh if phi == "tanh" else lambda u: np.maximum(u, 0.0)
        y = f(rng.multivariate_normal(np.full(m, 0.4), k_bn - 0.16, size=200_000))
        scale = np.abs(theory).max()
        assert np.abs(y.T @ y / len(y) - theory).max() <= 0.015 * scale
        h = rng.multivariate_normal(np.zeros(m), field, size=200_000)
        z = h - h.mean(1, keepdims=True)
        y = f(1.2 * z / np.sqrt((z**2).mean(1, keepdims=True)) + 0.4)
        deviations.append(np.abs(y.T @ y / len(y) - theory).max() / scale)
    assert deviations[1] < 0.03 and deviations[1] < 0.5 * deviations[0]


def test_resnet_spec_with_batch_norm_beta_and_relu():
    """tests/specs/conv2d_resnet.yaml (2D convs, batch norm with β = 0.1 before relu inside
    8 residual blocks, pool, flatten, orthogonal dense): finite symmetric kernels, and each
    batch-norm approximation noted once per node, not once per repetition."""

    from workbench.compile import load_spec

    s = load_spec(SPEC_FILES / "conv2d_resnet.yaml")
    x = np.random.default_rng(13).standard_normal((2, *s.input_shape))
    result = network_kernels(s, x)
    for k in (result.nngp, result.ntk):
        assert k.shape == (2, 2) and np.isfinite(k).all()
        assert np.abs(k - k.T).max() <= 1e-13 * np.abs(k).max()
    notes = [note for note in result.notes if not note.startswith("one_minus_c")]
    assert len(notes) == len(set(notes)) == 2
