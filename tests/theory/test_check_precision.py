"""--check-precision states a float64 result's error against a 32-digit rerun."""

from __future__ import annotations

import json

import numpy as np

from tests.spec_factory import FLAGSHIP
from workbench.cli import main
from workbench.theory.check_precision import worst_difference


def test_worst_difference_finds_the_worst_shared_number():
    low = {"a": 1.0, "b": [2.0, 3.0], "c": None, "d": "text", "e": 0.0}
    high = {"a": "1.0000001", "b": [2.0, 3.3], "c": 1.0, "d": "other", "e": 0.0}
    worst, count = worst_difference(low, high)
    assert count == 3 and abs(worst - 0.3 / 3.3) < 1e-15


def test_analyze_states_its_error(capsys):
    assert main(["analyze", str(FLAGSHIP), "--check-precision", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["precision_check"]
    assert check["compared"] >= 5 and 0 < check["worst_relative_difference"] < 1e-10
    assert main(["analyze", str(FLAGSHIP), "--check-precision", "--digits", "20", "--json"]) == 0
    assert "unavailable" in json.loads(capsys.readouterr().out)["precision_check"]


def test_kernel_states_its_error(tmp_path, capsys):
    path = tmp_path / "f.yaml"
    path.write_text(
        "name: f\ninput: {shape: [3]}\ndefaults: {sigma_w2: 1.5, sigma_b2: 0.05}\n"
        "layers:\n  - dense: {width: 8}\n  - act: relu\n  - dense: {width: 8}\n"
    )
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((5, 3)))
    argv = [
        "kernel",
        str(path),
        "--inputs",
        str(tmp_path / "x.npy"),
        "--out",
        str(tmp_path / "k.npz"),
    ]
    assert main([*argv, "--check-precision", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["precision_check"]
    assert "first 2 inputs" in check["reference"] and check["compared"] >= 8
    assert check["worst_relative_difference"] < 1e-13
