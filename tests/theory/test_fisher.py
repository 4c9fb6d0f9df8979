"""Fisher information bounds (mean_field_batchnorm): the bounds bracket the simulated λ_max,
the paper's vanilla and batch-normalised relu recursions (Claims 6.1–6.4) come out as special
cases, the paper's population model is the large-batch limit of the exact batch rules, and the
CLI sweeps γ."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.spec_factory import make_spec
from workbench.cli import main
from workbench.errors import TheoryError
from workbench.sim import probes
from workbench.sim.network import build_network
from workbench.theory.fisher import fisher_bounds, with_gamma, without_normalization

SW2, SB2 = 2.0, 0.5


def _relu_net(bn: bool, width: int = 64, depth: int = 3, out: int = 3, gamma: float = 1.0,
              d: int = 16):  # fmt: skip
    norm = [{"bn": {"gamma": gamma}}] if bn else []
    layers = [{"dense": {"width": width}}]
    for _ in range(depth - 1):
        layers += [*norm, {"act": "relu"}, {"dense": {"width": width}}]
    layers += [*norm, {"act": "relu"}, {"dense": {"width": out}}]
    return make_spec(layers, shape=(d,), sw2=SW2, sb2=SB2)


@pytest.mark.parametrize(("bn", "statistics"), [(False, "batch"), (True, "batch"),
                                                (True, "fixed")])  # fmt: skip
def test_bounds_bracket_the_simulated_lambda_max(bn, statistics):
    """Lower bound ≤ Monte-Carlo λ_max ≤ upper bound (4 standard errors) for 12 networks of
    width 192 on a batch of 8 inputs: vanilla, and batch norm with gradients through its
    statistics or with them held fixed (simulated by detaching them)."""
    spec = _relu_net(bn)
    x = np.random.default_rng(0).standard_normal((8, 16))
    bounds = fisher_bounds(spec, x, statistics=statistics)
    net = build_network(spec, 192, 12, seed=1, bn_statistics=statistics)
    lam = probes.fisher_max_eigenvalue(net, torch.tensor(x), "standard", 200, 1e-7).numpy()
    sem = lam.std(ddof=1) / math.sqrt(len(lam))
    assert bounds.lower <= lam.mean() + 4 * sem
    assert lam.mean() - 4 * sem <= bounds.upper


def _relu_dual(q: float, c: float) -> tuple[float, float]:
    """E[φ(u)φ(v)]/q and E[φ′(u)φ′(v)] of relu at correlation c (the arc-cosine kernels)."""
    t = (math.sqrt(1 - c * c) + c * (math.pi / 2 + math.asin(c))) / (2 * math.pi)
    return t, 0.25 + math.asin(c) / (2 * math.pi)


def test_claims_6_1_and_6_2_vanilla_relu():
    """mean_field_batchnorm Claims 6.1–6.2 (Karakida et al.'s recursions, eqs. 20–22) for the
    paper's data model (q̂⁰ = 1, q̂⁰_xy = 0): q^{l+1} = σ_b² + σ_w² q̂ˡ, q̂ = q/2,
    q̂_xy = q·t(c); q̃ˡ_xy = σ_w² q̃ˡ⁺¹_xy (1/4 + arcsin c/2π), q̃^L = 1; each layer's share of
    the lower bound is N_{l−1} q̂ˡ⁻¹_xy q̃ˡ_xy (eq. 45) plus its bias's q̃ˡ_xy — to 1e-12."""
    spec = _relu_net(False, width=50, depth=4, out=1)
    hat, hat_xy, cs = [1.0], [0.0], []
    q = q_xy = 0.0
    for _ in range(4):  # forward: pre-activations of layers 1..4, then their relu
        q, q_xy = SB2 + SW2 * hat[-1], SB2 + SW2 * hat_xy[-1]
        c = q_xy / q
        cs.append(c)
        hat.append(q / 2)
        hat_xy.append(q * _relu_dual(q, c)[0])
    tilde_xy = [1.0]  # the linear readout's δ
    for c in reversed(cs):
        tilde_xy.insert(0, SW2 * tilde_xy[0] * _relu_dual(1.0, c)[1])
    fans = [16, 50, 50, 50, 50]
    expected = [fans[i] * hat_xy[i] * tilde_xy[i] + tilde_xy[i] for i in range(5)]
    layers = fisher_bounds(spec).layers
    assert [w.path for w in layers][0] == "layers[0]" and len(layers) == 5
    for got, want in zip(layers, expected, strict=True):
        assert got.f_lower == pytest.approx(want, rel=1e-12)


def test_claims_6_3_and_6_4_batch_norm_relu():
    """Batch-normalised relu in the paper's model (statistics of the data, constants):
    q̂ = γ²/2 and q̂_xy = γ²/2π after every BN-relu (Claim 6.3: the normalised field of
    distinct inputs is uncorrelated), and back through BN δ_z = γ δ_h/s with
    s² = qˡ − qˡ_xy, the variance over the data (eqs. 14–15). The printed eq. 25 divides by
    qˡ alone, which drops the data mean μ² = qˡ_xy that the σ_b² bias gives every unit; the
    exact finite-batch rules converge to s² (test below), so the paper's form is a misprint
    or assumes σ_b² = 0."""
    gamma = 1.7
    spec = _relu_net(True, width=40, depth=3, out=1, gamma=gamma)
    hat, hat_xy = [1.0], [0.0]
    spreads = []
    for _ in range(3):
        q, q_xy = SB2 + SW2 * hat[-1], SB2 + SW2 * hat_xy[-1]
        spreads.append(q - q_xy)
        hat.append(gamma**2 / 2)
        hat_xy.append(gamma**2 / (2 * math.pi))
    tilde_xy = [1.0]
    for spread in reversed(spreads):  # relu of uncorrelated normalised fields: Ṫ_xy = 1/4
        tilde_xy.insert(0, SW2 * tilde_xy[0] * 0.25 * gamma**2 / spread)
    fans = [16, 40, 40, 40]
    expected = [fans[i] * hat_xy[i] * tilde_xy[i] + tilde_xy[i] for i in range(4)]
    got = [w.f_lower for w in fisher_bounds(spec).layers]
    assert got == pytest.approx(expected, rel=1e-12)


def test_the_population_model_is_the_large_batch_limit():
    """The exact rules for a batch of B i.i.d. inputs with fixed statistics approach the
    paper's population model like 1/B: the lower bound's excess times B stays near 36
    (131% at B = 32, 28% at 128, 14% at 256; inputs in 1024 dimensions, nearly orthogonal as
    the model has them)."""
    spec = _relu_net(True, width=100, depth=3, out=4, d=1024)
    population = fisher_bounds(spec).lower
    excess = []
    for batch in (32, 128):
        x = np.random.default_rng(0).standard_normal((batch, 1024))
        excess.append(fisher_bounds(spec, x, statistics="fixed").lower / population - 1)
    assert 0 < excess[1] < 0.3 * excess[0], excess
    assert abs(excess[1] * 128 / (excess[0] * 32) - 1) < 0.3, excess


def test_batch_norm_lowers_lambda_max_for_small_gamma():
    """mean_field_batchnorm Fig. 1: at γ = 1 batch norm lowers the lower bound on λ_max (and
    raises η_max) against the vanilla network; at large γ it no longer does."""
    spec = _relu_net(True, width=200, depth=4, out=10)
    vanilla = fisher_bounds(without_normalization(spec), momentum=0.9)
    small = fisher_bounds(with_gamma(spec, 1.0), momentum=0.9)
    large = fisher_bounds(with_gamma(spec, 6.0), momentum=0.9)
    assert small.lower < vanilla.lower < large.lower
    assert small.eta_max > vanilla.eta_max
    assert small.eta_max == pytest.approx(2 * 1.9 / small.lower)


def test_bad_options_are_typed_errors():
    spec = _relu_net(False)
    with pytest.raises(TheoryError, match="momentum"):
        fisher_bounds(spec, momentum=1.5)
    with pytest.raises(TheoryError, match="two representative"):
        fisher_bounds(spec, np.ones((1, 16)))


def test_fisher_command(tmp_path, capsys):
    """`workbench fisher`: the promised JSON, a γ sweep with its plot, and batch statistics
    refused without a batch."""
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: f\ninput: {shape: [16]}\ndefaults: {sigma_w2: 2, sigma_b2: 0.5}\nlayers:\n"
        "  - dense: {width: 32}\n  - bn\n  - act: relu\n  - dense: {width: 3}\n"
    )
    assert main(["fisher", str(spec), "--momentum", "0.9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"lambda_max_lower", "lambda_max_upper", "eta_max", "layers"} <= set(result)
    assert [row["path"] for row in result["layers"]] == ["layers[0]", "layers[3]"]
    assert result["lambda_max_lower"] == pytest.approx(sum(r["f_l"] for r in result["layers"]))
    plot = tmp_path / "fig1.png"
    argv = ["fisher", str(spec), "--sweep", "gamma=0.5:2:4", "--out", str(plot), "--json"]
    assert main(argv) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert [r["gamma"] for r in sweep["rows"]] == [0.5, 1.0, 1.5, 2.0] and "vanilla" in sweep
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert main(["fisher", str(spec), "--bn-statistics", "batch"]) == 2
    assert "needs a batch" in capsys.readouterr().err
    assert main(["fisher", str(spec), "--bn-statistics", "batch", "--batch-size", "8"]) == 0
