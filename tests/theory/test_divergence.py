"""Just above and at the edge of chaos without a finite fixed point: relu with σ_w² ≥ 2 and a
bias grows by a factor (or, at σ_w² = 2, by σ_b² per layer) and says so; nothing crashes."""

from __future__ import annotations

import json

import pytest

from workbench.activations import parse_activation
from workbench.analysis import analyze_spec
from workbench.cli import main
from workbench.theory.critical import critical_line


def _relu_net(make_spec, sw2, sb2):
    body = [{"dense": {"width": 8}}, {"act": "relu"}]
    return make_spec([*body, {"repeat": {"times": 100, "body": body}}], sw2=sw2, sb2=sb2)


@pytest.mark.parametrize("sb2", [0.0, 2.01e-5, 0.05])
@pytest.mark.parametrize("sw2", [2.0, 2.001, 2.01, 2.027])
def test_relu_near_its_critical_point_reports_fixed_point_or_rate(make_spec, sw2, sb2):
    (block,) = analyze_spec(_relu_net(make_spec, sw2, sb2)).to_dict()["blocks"]
    chi1 = float(block["chi_1"])
    assert chi1 == pytest.approx(sw2 / 2, rel=1e-14)
    if sw2 == 2.0 and sb2 == 0.0:
        assert block["phase"] == "critical" and float(block["q_star"]) == 1.0
    elif sw2 == 2.0:
        assert block["q_star"] is None and float(block["growth_rate"]) == 1.0
        assert f"grows linearly, by {sb2:.6g} per iteration" in block["notes"][0]
    else:
        assert block["q_star"] is None and block["phase"] == "chaotic"
        assert float(block["growth_rate"]) == pytest.approx(sw2 / 2, rel=1e-14)
        assert "grows by a factor" in block["notes"][0]


def test_relu_ordered_fixed_point_is_exact(make_spec):
    (block,) = analyze_spec(_relu_net(make_spec, 1.5, 0.05)).to_dict()["blocks"]
    assert float(block["q_star"]) == pytest.approx(0.05 / (1 - 0.75), rel=1e-15)


def test_relu_vanishing_variance_keeps_its_chi(make_spec):
    (block,) = analyze_spec(_relu_net(make_spec, 0.5, 0.0)).to_dict()["blocks"]
    assert float(block["q_star"]) == 0 and float(block["chi_1"]) == pytest.approx(0.25)


def test_phase_diagram_marks_bias_variances_without_finite_q_star(capsys, tmp_path):
    points = critical_line(parse_activation("relu"), [0.0, 2.01e-5, 0.1])
    assert [p.finite for p in points] == [True, False, False]
    assert all(float(p.sigma_w2) == 2.0 for p in points)
    out = tmp_path / "relu.png"
    argv = ["phase-diagram", "--activation", "relu", "--sigma-b2", "0:0.1:3", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["points"]
    assert [r.get("finite_q_star", True) for r in rows] == [True, False, False]
    assert out.stat().st_size > 0
    assert main(["critical", "--activation", "relu", "--sigma-b2", "0.1"]) == 2
    assert "grows by sigma_b2 = 0.1 per layer" in capsys.readouterr().err


PHASES = {  # (σ_w², σ_b²): ordered, critical, chaotic
    "relu": [(1.5, 0.05), (2.0, 0.0), (4.0, 0.05)],
    "tanh": [(1.2, 0.05), (1.7609546396067393, 0.05), (2.5, 0.05)],
    "erf": [(1.0, 0.05), (1.3758390073466813, 0.05), (3.0, 0.05)],
}


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
@pytest.mark.parametrize("name", sorted(PHASES))
def test_every_phase_at_every_depth_gives_numbers_or_a_rate(make_spec, name, depth):
    """analyze and kernel in each phase: finite numbers, or a typed divergence report that
    states the growth rate — never inf/NaN, never an untyped error."""
    import numpy as np

    from workbench.errors import TheoryError
    from workbench.theory.evaluate import network_kernels

    x = np.random.default_rng(1).standard_normal((2, 8))
    for sw2, sb2 in PHASES[name]:
        body = [{"dense": {"width": 8}}, {"act": name}]
        spec = make_spec([*body, {"repeat": {"times": depth - 1, "body": body}}], sw2=sw2, sb2=sb2)
        (block,) = analyze_spec(spec).to_dict()["blocks"]
        if block["q_star"] is None:
            assert float(block["growth_rate"]) > 1 and "no finite fixed point" in block["notes"][0]
        else:
            assert np.isfinite(float(block["q_star"])) and np.isfinite(float(block["chi_1"]))
        try:
            kernels = network_kernels(spec, x)
        except TheoryError as exc:
            assert "grows by a factor" in exc.message, exc.message
            assert depth > 10
            continue
        for k in (kernels.nngp, kernels.ntk, kernels.one_minus_c):
            assert np.isfinite(k).all()
