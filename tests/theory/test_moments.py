"""Moments and normalised sensitivity (labatie2019): every node kind's ``noise`` rule against
closed forms, 50-digit mpmath, its symbolic form and the simulator; the paper's theorems as
special cases (the φ-increment √(π/(π − 1)), Theorem 2's range, Theorem 4's exponent)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp

from tests.spec_factory import make_spec
from workbench import notation as n
from workbench.activations import parse_activation
from workbench.cli import main
from workbench.compile import spec_graph
from workbench.errors import TheoryError
from workbench.gaussian.symbolic import numeric_value
from workbench.nodes.base import rule
from workbench.precision import Mp, context
from workbench.theory.derive import derive
from workbench.theory.evaluate import Evaluator, initial_state
from workbench.theory.moments import Noise, NoiseWalk, moment_profile, phi_increment
from workbench.validation.quantities import make_inputs
from workbench.validation.sensitivity import (
    build_moment_network,
    compare,
    fitted_tau,
    measure_moments,
)

RELU_INCREMENT = math.sqrt(math.pi / (math.pi - 1))


def _inputs(spec, count, seed=0):
    return make_inputs(spec, {"count": count, "seed": seed}).numpy()


def test_relu_phi_increment_from_the_engine():
    """Theorem 3's exp m_φ for relu on a Gaussian field, (1 − 1/π)^{−1/2}, to 1e-14 in float64
    and 1e-45 at 50 digits; for tanh against Gauss–Hermite quadrature done here."""
    relu = parse_activation("relu")
    assert abs(phi_increment(relu) - RELU_INCREMENT) < 1e-14
    import mpmath

    with mpmath.workdps(60):
        exact = mpmath.sqrt(mpmath.pi / (mpmath.pi - 1))
    assert abs(phi_increment(relu, 1, context(50)) - exact) < 1e-45
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    q = 0.7
    u = math.sqrt(q) * x
    dphi2 = np.sum(w / np.cosh(u) ** 4)
    var = np.sum(w * np.tanh(u) ** 2) - np.sum(w * np.tanh(u)) ** 2
    assert abs(phi_increment(parse_activation("tanh"), q) - math.sqrt(q * dphi2 / var)) < 1e-12


def test_vanilla_relu_first_increment_and_theorem_2():
    """He-initialised relu on equal-norm uncorrelated inputs: δχ¹ = √(π/(π − 1)) exactly
    (μ₂(x¹) = (1 − 1/π)(1 − 1/m), the noise kept); on random inputs every increment lies in
    Theorem 2's [1, √2] and they decay towards 1 (pseudo-linear)."""
    spec = make_spec([{"repeat": {"times": 40, "body": [{"dense": {"width": 64}},
                                                        {"act": "relu"}]}}],
                     shape=(64,), sw2=2.0, sb2=0.0)  # fmt: skip
    profile = moment_profile(spec, _inputs(spec, 16))
    assert abs(float(profile.layers[0].delta_chi) - RELU_INCREMENT) < 1e-12
    x = np.random.default_rng(3).standard_normal((12, 64)) + 0.5
    deltas = [float(layer.delta_chi) for layer in moment_profile(spec, x).layers]
    assert all(1 <= d <= math.sqrt(2) for d in deltas)
    assert deltas[-1] < deltas[5] and deltas[-1] < 1.03
    regimes = {layer.regime for layer in moment_profile(spec, x).layers[10:]}
    assert regimes <= {"transient growth", "pseudo-linear"}


def test_batch_norm_increment_closed_form():
    """Uncorrelated equal-norm inputs make the centred pre-activations isotropic on m − 1
    dimensions, so δ_BN χ = (E‖z‖² E[1/‖z‖²])^{1/2} = ((m − 1)/(m − 3))^{1/2} exactly; the
    φ-increment then is relu's on a Gaussian field, up to the batch's O(1/m) correlations."""
    spec = make_spec([{"repeat": {"times": 6, "body": [{"dense": {"width": 64}}, "bn",
                                                       {"act": "relu"}]}}],
                     shape=(64,), sw2=2.0, sb2=0.0)  # fmt: skip
    m = 24
    profile = moment_profile(spec, _inputs(spec, m))
    first = profile.layers[0]
    assert abs(float(first.delta_chi_bn) - math.sqrt((m - 1) / (m - 3))) < 1e-10
    assert abs(float(first.delta_chi_phi) - RELU_INCREMENT) < 0.02
    assert {layer.regime for layer in profile.layers} == {"exploding sensitivity"}


MIXED_FLAT = [{"dense": {"width": 16, "sigma_b2": 0.1}}, {"act": "erf"},
              {"residual": {"body": [{"dense": {"width": 16}}, {"act": "relu"}]}},
              {"layernorm": {"gamma": 1.3, "beta": 0.2}},
              {"repeat": {"times": 3, "body": [{"dense": {"width": 16}}, {"act": "erf"}]}},
              {"dense": {"width": 2}}]  # fmt: skip
MIXED_CNN = [{"conv": {"channels": 4, "kernel": 3, "variance": [0.2, 0.5, 0.3]}}, {"act": "relu"},
             {"conv": {"channels": 4, "kernel": 3, "stride": 2}}, {"act": "erf"},
             {"pool": "global_avg"}, {"dense": {"width": 3}}]  # fmt: skip
MIXED_FLATTEN = [{"conv": {"channels": 4, "kernel": 3}}, {"act": "relu"}, "flatten",
                 {"dense": {"width": 6}}, {"act": "relu"}]  # fmt: skip


@pytest.mark.parametrize(
    "layers, shape",
    [(MIXED_FLAT, (6,)), (MIXED_CNN, (2, 6)), (MIXED_FLATTEN, (2, 5))],
    ids=["flat", "cnn", "flatten"],
)
def test_float64_equals_50_digits(layers, shape):
    """Every row's log χ and μ₂ in float64 against 50-digit mpmath, to 1e-12."""
    spec = make_spec(layers, shape=shape, sw2=1.6, sb2=0.05)
    x = np.random.default_rng(1).standard_normal((3, *shape))
    low = moment_profile(spec, x, with_rank=False)
    high = moment_profile(spec, x, digits=50, with_rank=False)
    assert [r.path for r in low.rows] == [r.path for r in high.rows]
    for a, b in zip(low.rows, high.rows):
        assert abs(float(a.log_chi) - float(b.log_chi)) < 1e-12, a.path
        assert abs(float(a.mu2_signal) / float(b.mu2_signal) - 1) < 1e-12, a.path


def _noise_maps(spec, x, ctx):
    """Each top-level node's recorded entry and its numeric noise map of a positive vector."""
    ev = Evaluator()
    mode = "flat" if len(spec.input_shape) == 1 else "full"
    with ctx.active():
        _, frame = ev.record(spec_graph(spec), initial_state(x, mode, False, ctx))
        ev.learning = False
        walk = NoiseWalk(ev, ctx)
        rng = np.random.default_rng(5)
        out = []
        for entry in frame:
            shape = entry.inp.own_variances(entry.inp.nngp).shape
            noise = 1 + 0.3 * rng.random(shape)
            mapped = rule(entry.node, "noise")(entry.node, Noise(ctx.array(noise)), walk, entry, "")
            out.append((entry, noise, mapped.n))
    return out


def _value(eq, **values):
    subs = {getattr(n, k): sp.Rational(str(v)) for k, v in values.items()}
    return numeric_value(eq.rhs.xreplace(subs))


def _close(a, b, rel=1e-12):
    assert abs(a - b) <= rel * max(abs(b), 1e-30), (a, b)


def test_noise_rules_symbolic_equal_numeric():
    """Each node's symbolic ``noise`` (``workbench derive``) at the recorded states equals its
    numeric rule to 1e-12: dense σ_w² n, erf's E[φ′²] n, layer norm's γ² n/v_a, the conv's A_v
    at every pixel, the pool's Σ n/P²."""
    ctx = Mp(20)
    fc = make_spec([{"dense": {"width": 8, "sigma_w2": 1.7}}, {"act": "erf"},
                    {"dense": {"width": 8, "sigma_w2": 1.3, "sigma_b2": 0.2}},
                    {"layernorm": {"gamma": 1.4, "beta": 0.3}}, {"dense": {"width": 2}}],
                   shape=(5,))  # fmt: skip
    rules = [s.rules for s in derive(fc).stages]
    maps = _noise_maps(fc, np.random.default_rng(0).standard_normal((2, 5)), ctx)
    entry, noise, out = maps[0]
    _close(_value(rules[0]["noise"], n_in=noise[1]), out[1])
    entry, noise, out = maps[1]
    q = entry.out.field_nngp[1, 1]
    _close(_value(rules[1]["noise"], q_a=q, n_in=noise[1]), out[1])
    entry, noise, out = maps[3]
    k, m = entry.inp.nngp, entry.inp.mean
    _close(_value(rules[3]["noise"], q_a=k[0, 0], m_x=m[0], n_in=noise[0]), out[0])

    cnn = make_spec([{"conv": {"channels": 3, "kernel": 3, "variance": [0.2, 0.5, 0.3],
                               "sigma_w2": 1.6}}, {"pool": "global_avg"},
                     {"dense": {"width": 2}}], shape=(2, 5))  # fmt: skip
    stages = [s.rules for s in derive(cnn).stages]
    maps = _noise_maps(cnn, np.random.default_rng(1).standard_normal((2, 2, 5)), ctx)
    entry, noise, out = maps[0]
    table = {n.n_in_px[i]: sp.Float(noise[1, i % 5], 30) for i in range(-2, 8)}
    for pixel in range(5):
        expr = stages[0]["noise"].rhs.xreplace({n.alpha: pixel}).xreplace(table)
        _close(numeric_value(expr), out[1, pixel])
    entry, noise, out = maps[1]
    table = {n.n_in_px[i]: sp.Float(noise[0, i], 30) for i in range(5)}
    _close(numeric_value(stages[1]["noise"].rhs.doit().xreplace(table)), out[0])


@pytest.mark.parametrize(
    "layers, shape, width",
    [
        (
            [
                {"conv": {"channels": 8, "kernel": 3, "variance": [0.7, 0.2, 0.1]}},
                {"act": "tanh"},
                {"conv": {"channels": 8, "kernel": 3, "variance": [0.6, 0.3, 0.1]}},
                {"act": "tanh"},
                {"pool": "global_avg"},
                {"dense": {"width": 8}},
                {"act": "relu"},
            ],
            (24, 6),
            192,
        ),
        (
            [
                {"dense": {"width": 8}},
                {"layernorm": {"gamma": 1.2, "beta": 0.1}},
                {"act": "tanh"},
                {"residual": {"body": [{"dense": {"width": 8}}, {"act": "relu"}]}},
                {"dense": {"width": 8}},
                "bn",
                {"act": "relu"},
            ],
            (256,),
            512,
        ),
    ],
    ids=["cnn-pool", "layernorm-residual-bn"],
)
def test_theory_matches_the_simulator(layers, shape, width):
    """χ at every layer's end against 16 simulated networks (batch norm in test mode): within
    4 standard errors plus 2% (the layers' finite-width drift)."""
    spec = make_spec(layers, shape=shape, sw2=2.0, sb2=0.0)
    x = _inputs(spec, 16, seed=2)
    profile = moment_profile(spec, x)
    measured = measure_moments(build_moment_network(spec, width, 16, seed=1), x, seed=1)
    for row in compare(profile, measured):
        mc, theory = row["monte_carlo"]["chi"], row["theory"]["chi"]
        assert abs(mc["mean"] - theory) < 4 * mc["se"] + 0.02 * theory, row["path"]


def test_resnet_power_law_approaches_theorem_4():
    """A batch-normalised resnet's wide-limit χˡ grows as a power of l whose local exponent
    rises towards Theorem 4's τ = ½(⟨δχ⟩^{2H} − 1): extrapolated in 1/l from the fits over
    units 50–100 and 100–200, it is τ to 1%; every unit's regime is the power law."""
    unit = {"residual": {"body": ["bn", {"act": "relu"}, {"dense": {"width": 8}}, "bn",
                                  {"act": "relu"}, {"dense": {"width": 8}}]}}  # fmt: skip
    spec = make_spec([{"dense": {"width": 8}}, {"repeat": {"times": 200, "body": [unit]}}],
                     shape=(16,), sw2=2.0, sb2=0.0)  # fmt: skip
    profile = moment_profile(spec, _inputs(spec, 8), with_rank=False)
    law = profile.power_law()
    assert law["branch_layers"] == 2 and law["units"] == 200
    logs = np.array([math.log(float(u.chi)) for u in profile.layers if u.role == "sum"])
    depth = np.log(np.arange(1, 201))
    early = np.polyfit(depth[50:100], logs[50:100], 1)[0]
    late = np.polyfit(depth[100:200], logs[100:200], 1)[0]
    assert early < late < law["tau_theorem4"]
    extrapolated = late + (late - early)  # τ(l) ≈ τ − C/l at l ≈ 71 and 141
    assert abs(extrapolated / law["tau_theorem4"] - 1) < 0.01
    assert {u.regime for u in profile.layers if u.role == "sum"} == {"power law"}


def test_simulated_power_law_exponent():
    """fitted_tau reads each simulated network's χ at the units' sums (one value per network)."""
    unit = {"residual": {"body": ["bn", {"act": "relu"}, {"dense": {"width": 8}}]}}
    spec = make_spec([{"dense": {"width": 8}}, {"repeat": {"times": 8, "body": [unit]}}],
                     shape=(64,), sw2=2.0, sb2=0.0)  # fmt: skip
    x = _inputs(spec, 16)
    profile = moment_profile(spec, x)
    taus = fitted_tau(profile, measure_moments(build_moment_network(spec, 256, 6), x))
    assert taus.shape == (6,)
    assert abs(taus.mean() - profile.power_law()["tau_fit"]) < 5 * taus.std(ddof=1) / math.sqrt(6)


def test_bad_data_sets_are_refused():
    spec = make_spec([{"dense": {"width": 8}}, "bn", {"act": "relu"}], shape=(8,))
    with pytest.raises(TheoryError, match="at least two inputs"):
        moment_profile(spec, np.ones((1, 8)))
    with pytest.raises(TheoryError, match=r"layers\[1\].*spans 2 dimension"):
        moment_profile(spec, np.random.default_rng(0).standard_normal((3, 8)))
    vanilla = make_spec([{"dense": {"width": 8}}, {"act": "relu"}], shape=(8,))
    with pytest.raises(TheoryError, match="no variance over the inputs"):
        moment_profile(vanilla, np.ones((4, 8)))


def test_cli_moments(tmp_path, capsys):
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(
        "name: s\ninput: {shape: [64]}\ndefaults: {sigma_w2: 2.0, sigma_b2: 0.0}\n"
        "layers:\n  - repeat: {times: 3, body: [{dense: {width: 32}}, bn, {act: relu}]}\n"
    )
    assert main(["moments", str(spec_path), "--json", "--m", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [set(layer) >= {"path", "delta_chi", "delta_chi_bn", "delta_chi_phi", "regime"}
            for layer in out["layers"]] == [True] * 3  # fmt: skip
    plot = tmp_path / "chi.png"
    argv = ["moments", str(spec_path), "--m", "8", "--simulate", "--width", "64",
            "--networks", "3", "--out", str(plot), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Monte-Carlo: 3 networks of width 64" in text and plot.stat().st_size > 10_000
