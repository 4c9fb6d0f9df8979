"""`critical` and `analyze` agree (issue 15): for every named activation over σ_b² ∈ [0, 2],
a critical point's q* is the attracting fixed point that `analyze` finds at its σ_w², with
χ₁ = 1 and χ_q < 1; where the only χ₁ = 1 fixed point repels (gelu at σ_b² = 0.05 once
reported σ_w² = 2.3025, q* = 0.722 with χ_q = 1.085), there is no critical point and the
error says why."""

from __future__ import annotations

import pytest

from workbench.activations import NAMED, parse_activation
from workbench.analysis import analyze_spec
from workbench.compile.load import spec_from_dict
from workbench.errors import TheoryError
from workbench.theory.critical import critical_line

SIGMA_B2 = [0.05, 0.2, 0.5, 1.0, 2.0]


def _analyze(name: str, sigma_w2: float, sigma_b2: float) -> dict:
    spec = {"name": "t", "input": {"shape": [4]},
            "defaults": {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2},
            "layers": [{"dense": {"width": 4}},
                       {"repeat": {"times": 3, "body": [{"act": name}, {"dense": {"width": 4}}]}},
                       ]}  # fmt: skip
    return analyze_spec(spec_from_dict(spec)).to_dict()["blocks"][0]


@pytest.mark.parametrize("name", [n for n in NAMED if parse_activation(n).positive_homogeneity()
                                  is None])  # fmt: skip
def test_critical_points_are_the_attracting_fixed_points_analyze_finds(name):
    for point in critical_line(parse_activation(name), SIGMA_B2):
        if not point.finite:
            assert "repelling" in point.note or "no solution" in point.note, point.note
            continue
        block = _analyze(name, float(point.sigma_w2), float(point.sigma_b2))
        assert block["q_star"] == pytest.approx(float(point.q_star), rel=1e-7), point
        assert block["chi_1"] == pytest.approx(1.0, abs=1e-8)
        assert block["chi_q"] < 1


@pytest.mark.parametrize("name, sigma_b2", [("gelu", 0.05), ("swish", 0.05), ("swish", 0.5)])
def test_a_repelling_chi1_fixed_point_is_no_critical_point(name, sigma_b2):
    """At the σ_w² where χ₁ = 1 at a repelling q*, analyze settles elsewhere (or nowhere)."""
    (point,) = critical_line(parse_activation(name), [sigma_b2])
    assert not point.finite and "repelling" in point.note and "chi_q" in point.note
    with pytest.raises(TheoryError, match="repelling"):
        from workbench.theory.critical import critical_point

        critical_point(parse_activation(name), sigma_b2)


@pytest.mark.parametrize("digits", [None, 30, 50])
def test_a_zero_fixed_point_approached_algebraically_is_stated_exactly(digits):
    """tanh at σ_w² = 1, σ_b² = 0: q → 0 like 1/l. float64 once said q* = 1.8e-16 'critical',
    30 digits 2.2e-22 'ordered', 50 digits did not converge; now q* = 0, χ₁ = 1, critical, in
    every precision, with the reason."""
    from workbench.precision import context

    body = [{"act": "tanh"}, {"dense": {"width": 4}}]
    spec = spec_from_dict({"name": "t", "input": {"shape": [4]},
                           "defaults": {"sigma_w2": 1, "sigma_b2": 0},
                           "layers": [{"dense": {"width": 4}},
                                      {"repeat": {"times": 3, "body": body}}]})  # fmt: skip
    (block,) = analyze_spec(spec, context(digits)).blocks
    assert block.q_star == 0 and block.phase == "critical" and abs(block.chi_1 - 1) <= 1e-15
    assert any("algebraically" in note for note in block.notes)
