"""Spectrum analyses find repeat blocks wherever they sit, residual bodies included."""

from __future__ import annotations

import pytest

from workbench.analysis import analyze_spec
from workbench.compile import spec_from_dict
from workbench.theory.spectrum import conv_modes, ntk_spectrum

CONV = {"conv": {"channels": 8, "kernel": 3}}


def nested(inner_first: bool):
    block = {"repeat": {"times": 20, "body": [{"act": "tanh"}, CONV]}}
    layers = [CONV, {"residual": {"body": [block]}}, {"act": "tanh"}, {"pool": "global_avg"},
              {"dense": {"width": 1}}]  # fmt: skip
    top = [CONV, block, {"act": "tanh"}, {"pool": "global_avg"}, {"dense": {"width": 1}}]
    return spec_from_dict({"name": "n", "input": {"shape": [3, 8]},
                           "defaults": {"sigma_w2": 1.5, "sigma_b2": 0.05},
                           "layers": layers if inner_first else top})  # fmt: skip


def test_blocks_inside_residual_bodies_are_analysed_like_top_level_ones():
    inner, top = nested(True), nested(False)
    path = "layers[1].residual.body[0]"
    assert [t.path for t in conv_modes(inner)] == [path]
    assert conv_modes(inner)[0].modes == conv_modes(top)[0].modes
    assert analyze_spec(inner).blocks[0].path == path
    a = ntk_spectrum(inner, 4, 0.3, [5, 10]).to_dict()
    b = ntk_spectrum(top, 4, 0.3, [5, 10]).to_dict()
    assert a["architecture"] == "CNN-P"
    for row_a, row_b in zip(a["depths"], b["depths"]):
        assert row_a["lambda_max"] == pytest.approx(row_b["lambda_max"], rel=1e-12)
        assert row_a["kappa"] == pytest.approx(row_b["kappa"], rel=1e-12)


def _fc(act: str, sw2: float, sb2: float):
    body = [{"dense": {"width": 8}}, {"act": act}]
    return spec_from_dict({"name": "f", "input": {"shape": [8]},
                           "defaults": {"sigma_w2": sw2, "sigma_b2": sb2},
                           "layers": [*body, {"repeat": {"times": 10, "body": body}}]})  # fmt: skip


def test_ordered_phase_spectrum_equals_high_precision():
    """erf deep in the ordered phase: λ_rest falls to 1e-60 at depth 1000, where Θ_aa − Θ_ab
    of float64 entries is pure rounding; its own recursion keeps every digit. The reference
    takes differences of high-precision expectations (another route), which needs ~75 digits
    to keep 12 of a 1e-61 gap: at 80 digits every depth is vouched for, at 60 the deepest is
    refused rather than printed wrong."""
    spec = _fc("erf", 1.0, 0.05)
    depths = [10, 30, 100, 300, 1000]
    low = ntk_spectrum(spec, 5, 0.3, depths).to_dict()["depths"]
    short = ntk_spectrum(spec, 5, 0.3, depths, digits=60).to_dict()["depths"]
    assert short[-1]["lambda_rest"] is None and "more than 60 digits" in short[-1]["note"]
    high = ntk_spectrum(spec, 5, 0.3, depths, digits=80).to_dict()["depths"]
    assert float(high[-1]["lambda_rest"]) < 1e-50
    for a, b in zip(low, high):
        for key in ("lambda_max", "lambda_rest", "kappa"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-8), (a["depth"], key)
        assert "note" not in a


def test_spectrum_keeps_the_depths_before_an_overflow():
    """relu at σ_w² = 4 (chaotic, no finite q*): the variance doubles per layer and leaves
    float64 near depth 1000; the earlier depths are kept and the failing one is marked."""
    result = ntk_spectrum(_fc("relu", 4.0, 0.05), 3, 0.2, [10, 100, 5000, 6000]).to_dict()
    rows = result["depths"]
    assert [r["depth"] for r in rows] == [10, 100, 5000]
    assert all(isinstance(r["lambda_max"], float) for r in rows[:2])
    assert rows[2]["lambda_max"] is None and rows[2]["note"].startswith("not computed")
    assert "no finite fixed point" in result["notes"][0]


def test_cnn_rows_that_lost_their_digits_are_marked():
    spec = nested(False)
    rows = ntk_spectrum(spec, 3, 0.3, [2, 400]).to_dict()["depths"]
    assert rows[0]["lambda_rest"] is not None and "note" not in rows[0]
    deep = rows[1]  # tanh at σ_w² = 1.5 is ordered: by depth 400 Θ_aa − Θ_ab has cancelled
    assert deep["lambda_rest"] is None and deep["kappa"] is None and "--digits" in deep["note"]
    assert deep["lambda_max"] > 0
