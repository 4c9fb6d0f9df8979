"""`analyze` on blocks outside the FC cycle theory: the orbit of the block's own rules,
checked against what the rules imply in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from spec_factory import make_spec

from workbench.analysis import analyze_spec

DENSE = {"dense": {"width": 64}}


def make(body, times=200, shape=(16,), sw2=1.5, sb2=0.05):
    first = DENSE if len(shape) == 1 else {"conv": {"channels": 8, "kernel": 3}}
    layers = [first, {"repeat": {"times": times, "body": body}}]
    return make_spec(layers, shape, sw2, sb2, name="b")


def relu_dual(c):
    """E[relu(u) relu(v)] for unit variances and correlation c (the arc-cosine kernel)."""
    return (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / (2 * np.pi)


def test_relu_residual_stream_grows_geometrically_at_its_exact_rate():
    """y = x + W relu(x) + b: q' = q (1 + σ_w²/2) + σ_b², so q grows ×1.75 per pass at
    σ_w² = 1.5, and the correlation approaches 1."""
    block = analyze_spec(make([{"residual": {"body": [{"act": "relu"}, DENSE]}}])).blocks[0]
    assert block.phase == "variance grows" and block.growth.startswith("geometric")
    assert block.growth_rate == pytest.approx(1.75, rel=1e-9)
    assert block.c_exponent is not None and block.c_exponent > 0
    assert block.one_minus_c < 0.01


@pytest.mark.parametrize("batch_gamma", [1.0, 2.0])
def test_batch_norm_block_fixed_point_is_the_bn_rules(batch_gamma):
    """[bn, relu, dense] on a batch of 4: an exchangeable batch leaves batch norm with
    q = γ² and correlation −1/(N − 1) (bn.symbolic), so q* = σ_w² γ²/2 + σ_b² and
    c* = (σ_w² γ² J(−1/3) + σ_b²) / q*, J the arc-cosine kernel."""
    body = [{"bn": {"gamma": batch_gamma}}, {"act": "relu"}, DENSE]
    block = analyze_spec(make(body)).blocks[0]
    g2 = batch_gamma**2
    q_star = 1.5 * g2 / 2 + 0.05
    assert block.phase == "fixed point" and block.batch == 4
    assert block.q_star == pytest.approx(q_star, rel=1e-12)
    assert block.c_star == pytest.approx((1.5 * g2 * relu_dual(-1 / 3) + 0.05) / q_star, rel=1e-10)


def test_layernorm_block_settles_and_conv_bn_blocks_are_analysed():
    ln = analyze_spec(make([DENSE, "layernorm", {"act": "tanh"}])).blocks[0]
    assert ln.phase == "fixed point" and 0 < ln.rate_c < 1 and ln.xi_c > 0
    body = [{"conv": {"channels": 8, "kernel": 3}}, "bn", {"act": "relu"}]
    conv = analyze_spec(make(body, times=100, shape=(3, 8))).to_dict()
    assert conv["blocks"][0]["phase"] == "fixed point" and not conv["skipped"]
    assert conv["blocks"][0]["q_star"] == pytest.approx(0.5, rel=1e-9)  # relu of a unit field


def test_cli_prints_orbit_blocks(capsys, tmp_path):
    import yaml

    from workbench.cli import main

    spec = {"name": "r", "input": {"shape": [8]}, "defaults": {"sigma_w2": 1.5, "sigma_b2": 0.05},
            "layers": [DENSE, {"repeat": {"times": 50, "body": [
                {"residual": {"body": [{"act": "relu"}, DENSE]}}]}}]}  # fmt: skip
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["analyze", str(path)]) == 0
    out = capsys.readouterr().out
    assert "iterating their own rules" in out and "geometric" in out and "skipped" not in out
