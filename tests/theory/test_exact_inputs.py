"""Numbers keep the decimal text the user wrote until a precision context converts them: the
40-digit critical point at σ_b² = 0.05 is the critical point of 1/20, checked against an
independent 50-digit route (mpmath.quad of the Gaussian moments and mpmath.findroot, with
σ_b² the exact fraction 1/20)."""

from __future__ import annotations

import json
import pickle
from fractions import Fraction

import mpmath
import pytest

from workbench.cli import main
from workbench.compile import spec_from_text
from workbench.precision import ExactReal, Mp, exact_grid, exact_real

SIGMA_B2 = Fraction(1, 20)
PHI = {
    "tanh": (mpmath.tanh, lambda x: 1 / mpmath.cosh(x) ** 2),
    "erf": (mpmath.erf, lambda x: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-(x**2))),
    "sigmoid": (
        lambda x: 1 / (1 + mpmath.exp(-x)),
        lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2,
    ),
}


def _reference_critical(name: str, start: float) -> tuple[mpmath.mpf, mpmath.mpf]:
    """(σ_w², q*) with q = E[φ²]/E[φ′²] + σ_b² and σ_w² = 1/E[φ′²], at 50 digits (the
    secant search started from ``start``)."""
    phi, dphi = PHI[name]
    with mpmath.workdps(60):
        sb2 = mpmath.mpf(SIGMA_B2.numerator) / SIGMA_B2.denominator

        def gauss(f, q):
            s = mpmath.sqrt(q)
            density = lambda z: mpmath.exp(-(z**2) / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
            return mpmath.quad(lambda z: f(s * z) ** 2 * density(z), [-mpmath.inf, 0, mpmath.inf])

        q = mpmath.findroot(lambda q: gauss(phi, q) / gauss(dphi, q) + sb2 - q, mpmath.mpf(start))
        return 1 / gauss(dphi, q), q


@pytest.mark.parametrize("name", sorted(PHI))
def test_forty_digit_critical_point_is_that_of_the_decimal_written(capsys, name):
    assert main(["critical", "--activation", name, "--sigma-b2", "0.05", "--digits", "40",
                 "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["sigma_b2"] == "0.05" + "0" * 39  # 40 significant digits
    sigma_w2, q_star = _reference_critical(name, round(float(out["q_star"]), 3))
    with mpmath.workdps(60):
        assert abs(mpmath.mpf(out["sigma_w2"]) / sigma_w2 - 1) < 1e-38
        assert abs(mpmath.mpf(out["q_star"]) / q_star - 1) < 1e-38


def test_spec_numbers_keep_their_text():
    spec = spec_from_text(
        "name: t\ninput: {shape: [4]}\ndefaults: {sigma_w2: 1.76, sigma_b2: 0.05}\n"
        "layers:\n  - dense: {width: 8}\n  - act: tanh\n"
    )
    dense = spec.layers[0]
    assert isinstance(dense.sigma_b2, ExactReal) and dense.sigma_b2.fraction == SIGMA_B2
    assert float(dense.sigma_b2) == 0.05  # float64 code sees the nearest double
    with mpmath.workdps(40):
        assert Mp(30).num(dense.sigma_b2) == mpmath.mpf(1) / 20
    json_spec = spec_from_text(
        '{"name": "t", "input": {"shape": [4]}, "layers": [{"dense": {"width": 8, '
        '"sigma_w2": 1.76, "sigma_b2": 0.05}}]}',
        fmt="json",
    )
    assert json_spec.layers[0].sigma_w2.fraction == Fraction(176, 100)
    assert pickle.loads(pickle.dumps(dense.sigma_b2)).fraction == SIGMA_B2


def test_exact_grid_and_text():
    grid = exact_grid(exact_real("0"), exact_real("0.3"), 4)
    assert [g.fraction for g in grid] == [Fraction(k, 10) for k in range(4)]
    assert isinstance(exact_real("1e-3"), ExactReal) and exact_real("1e-3").fraction == Fraction(
        1, 1000
    )
    assert exact_real("1e400") == float("inf")  # no finite double: left to the range checks
    with pytest.raises(ValueError):
        exact_real("abc")
