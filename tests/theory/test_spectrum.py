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
