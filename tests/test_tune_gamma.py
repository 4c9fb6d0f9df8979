"""A batch-normalised block's χ₁ (gradient growth per pass, the data distribution's
statistics) against the closed form γ² E[φ′(β + γz)²] / Var[φ(β + γz)] by scipy quadrature,
and `workbench tune --gamma` landing on a requested growth (χ₁ = 1 has no solution)."""

from __future__ import annotations

import math

import mpmath
import pytest
import yaml
from scipy import integrate

from workbench.analysis import analyze_spec
from workbench.cli import main
from workbench.compile import load_spec, spec_from_dict
from workbench.errors import TheoryError, WorkbenchError
from workbench.tune import tune_spec, write_tuned

PHI = {  # φ and φ′ written out independently of the workbench's activations
    "tanh": (math.tanh, lambda x: 1 / math.cosh(x) ** 2),
    "erf": (math.erf, lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x)),
}


def _bn_spec(act: str, gamma: float, beta: float = 0.0, times: int = 6) -> dict:
    body = [{"bn": {"gamma": gamma, "beta": beta}}, {"act": act}, {"dense": {"width": 128}}]
    layers = [{"dense": {"width": 128}}, {"repeat": {"times": times, "body": body}}]
    defaults = {"sigma_w2": 1.3, "sigma_b2": 0.05}
    return {"name": f"bn-{act}", "input": {"shape": [64]}, "defaults": defaults, "layers": layers}


def _gaussian(f) -> float:
    density = lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(density, -40, 40, points=[0.0], epsabs=1e-15, epsrel=1e-13, limit=400)[0]


def _poincare_ratio(act: str, gamma: float, beta: float) -> float:
    phi, dphi = PHI[act]
    mean = _gaussian(lambda z: phi(beta + gamma * z))
    var = _gaussian(lambda z: (phi(beta + gamma * z) - mean) ** 2)
    return gamma**2 * _gaussian(lambda z: dphi(beta + gamma * z) ** 2) / var


def _chi_1(data: dict) -> float:
    (block,) = analyze_spec(spec_from_dict(data)).to_dict()["blocks"]
    return block["chi_1"]


@pytest.mark.parametrize("act, gamma, beta", [("tanh", 0.5, 0.0), ("tanh", 2.0, 0.3),
                                              ("erf", 1.0, 0.0), ("erf", 0.3, -0.5)])  # fmt: skip
def test_population_chi_1_is_the_poincare_ratio(act, gamma, beta):
    chi_1 = _chi_1(_bn_spec(act, gamma, beta))
    assert chi_1 == pytest.approx(_poincare_ratio(act, gamma, beta), rel=1e-10)
    assert chi_1 > 1


def test_relu_bn_grows_by_pi_over_pi_minus_one_at_every_gamma():
    for gamma in (0.2, 1.0, 3.0):
        assert _chi_1(_bn_spec("relu", gamma)) == pytest.approx(math.pi / (math.pi - 1), 1e-10)


def test_tune_gamma_lands_on_the_requested_growth(tmp_path):
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(_bn_spec("tanh", 1.0)))
    tuned = tune_spec(path, target="chi_1=1.05", gamma=True)
    assert abs(tuned.analysis["chi_1"] - 1.05) < 1e-10
    assert _poincare_ratio("tanh", tuned.gamma, 0.0) == pytest.approx(1.05, abs=1e-10)
    written = load_spec(write_tuned(tuned, tmp_path / "t.yaml"))
    assert written.layers[1].body[0].gamma == tuned.gamma


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_tune_gamma_critical_is_the_small_gamma_limit_and_says_so(act, tmp_path, capsys):
    """χ₁ = 1 exactly needs γ → 0 (Gaussian Poincaré); `--target critical` lands within the
    tuned specs' tolerance 1e-10 of it (χ₁ − 1 = 5e-11, γ ≈ 0.0025), checked against the
    closed form by scipy quadrature and against 40-digit mpmath quadrature of the same ratio,
    and says why in a note."""
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(_bn_spec(act, 1.0)))
    tuned = tune_spec(path, gamma=True)
    assert abs(tuned.analysis["chi_1"] - 1) <= 1e-10 and 1e-3 < tuned.gamma < 1e-2
    assert abs(_poincare_ratio(act, tuned.gamma, 0.0) - 1) <= 1e-10
    mpmath.mp.dps = 40
    phi = {"tanh": mpmath.tanh, "erf": mpmath.erf}[act]
    g = mpmath.mpf(tuned.gamma)

    def gauss(f):
        return mpmath.quad(lambda z: f(z) * mpmath.exp(-z * z / 2),
                           [-mpmath.inf, 0, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)  # fmt: skip

    mean = gauss(lambda z: phi(g * z))
    ratio = g**2 * gauss(lambda z: mpmath.diff(phi, g * z) ** 2) / gauss(
        lambda z: (phi(g * z) - mean) ** 2)  # fmt: skip
    assert 0 < float(ratio - 1) <= 1e-10 and abs(float(ratio - 1) - 5e-11) < 1e-12
    assert "no solution" in tuned.notes[0] and "gamma -> 0" in tuned.notes[0]
    assert main(["tune", str(path), "--gamma"]) == 0
    assert "note: chi_1 = 1 exactly has no solution" in capsys.readouterr().out


def test_tune_gamma_says_why_there_is_no_answer(tmp_path, capsys):
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(_bn_spec("tanh", 1.0)))
    with pytest.raises(TheoryError, match="outside"):
        tune_spec(path, target="chi_1=0.99", gamma=True)
    with pytest.raises(WorkbenchError, match="tune its batch norms' gamma with --gamma"):
        tune_spec(path)
    relu = tmp_path / "relu.yaml"
    relu.write_text(yaml.safe_dump(_bn_spec("relu", 1.0)))
    assert main(["tune", str(relu), "--gamma", "--target", "chi_1=1.2"]) == 2
    assert "at every gamma" in capsys.readouterr().err
