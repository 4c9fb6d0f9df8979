"""Kernel recursions (NNGP, NTK) over specs: against Monte-Carlo of wide random networks,
closed forms against quadrature, float64 against 50-digit mpmath, exact special cases, and the
NTK spectrum's large-depth limits (xiao_bahri §3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spec_factory import make_spec

import workbench.gaussian as gaussian
import workbench.theory.evaluate as kernels
from workbench.activations import parse_activation
from workbench.cli import main
from workbench.compile import spec_from_dict
from workbench.errors import TheoryError
from workbench.sim import probes
from workbench.sim.network import build_network
from workbench.theory.critical import critical_point
from workbench.theory.evaluate import network_kernels
from workbench.theory.spectrum import conv_modes, mean_predictor, ntk_spectrum, prediction_gap


def spec(layers, shape, sw2=1.5, sb2=0.05, name="k"):
    return make_spec(layers, shape, sw2, sb2, name)


CONV = {"conv": {"channels": 32, "kernel": 3}}
SPECS = {
    "FC": spec(
        [
            {"dense": {"width": 32}},
            {"repeat": {"times": 3, "body": [{"act": "tanh"}, {"dense": {"width": 32}}]}},
            {"act": "relu"},
            {"dense": {"width": 32}},
        ],
        [8],
        1.8,
        0.1,
    ),
    "CNN-F": spec(
        [
            CONV,
            {"repeat": {"times": 2, "body": [{"act": "erf"}, CONV]}},
            {"act": "relu"},
            "flatten",
            {"dense": {"width": 32}},
        ],
        [3, 6],
    ),
    "CNN-P": spec(
        [
            {"conv": {"channels": 32, "kernel": 3, "variance": [0.2, 0.5, 0.3]}},
            {"repeat": {"times": 2, "body": [{"act": "erf"}, CONV]}},
            {"act": "relu"},
            {"pool": "global_avg"},
            {"dense": {"width": 32}},
        ],
        [3, 6],
    ),
    "residual, relu body": spec(
        [
            {"dense": {"width": 32}},
            {
                "repeat": {
                    "times": 3,
                    "body": [
                        {
                            "residual": {
                                "scale": 0.7,
                                "body": [{"dense": {"width": 32}}, {"act": "relu"}],
                            }
                        }
                    ],
                }
            },
            {"dense": {"width": 32}},
        ],
        [8],
        1.0,
        0.1,
    ),
    "CNN residual, relu body": spec(
        [
            CONV,
            {
                "repeat": {
                    "times": 2,
                    "body": [{"residual": {"scale": 0.8, "body": [CONV, {"act": "relu"}]}}],
                }
            },
            {"pool": "global_avg"},
            {"dense": {"width": 32}},
        ],
        [3, 6],
        1.2,
        0.1,
    ),
    "batch norm": spec(
        [
            {"dense": {"width": 32}},
            {"bn": {"gamma": 1.5}},
            {"act": "tanh"},
            {"dense": {"width": 32}},
            {"bn": {}},
            {"act": "relu"},
            {"dense": {"width": 32}},
        ],
        [8],
    ),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_nngp_matches_monte_carlo(name):
    """Output second moments of 48 networks of width 768: every entry of the theory lies in
    the Monte-Carlo mean's 99.99% normal interval (|z| < 3.9), allowing 2% for the O(1/width)
    finite-width bias."""
    s = SPECS[name]
    x = np.random.default_rng(0).standard_normal((5, *s.input_shape))
    theory = network_kernels(s, x, ntk=False).nngp
    net = build_network(s, width=768, ensemble=48, seed=1)
    with torch.no_grad():
        out = net(torch.tensor(x)).reshape(48, 5, -1).numpy()
    samples = np.einsum("eak,ebk->eab", out, out) / out.shape[-1]
    mean, sem = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(48)
    assert (np.abs(theory - mean) <= 3.9 * sem + 0.02 * np.abs(theory).max()).all()


@pytest.mark.parametrize("name", ["FC", "CNN-P", "residual, relu body"])
def test_ntk_matches_empirical_ntk(name):
    """NTK parameterisation: the empirical NTK (torch.func) of 8 networks of width 256, with
    a scalar readout."""
    s = spec_from_dict(
        {"name": "n", "input": {"shape": list(SPECS[name].input_shape)},
         "defaults": SPECS[name].defaults, "layers": _raw_layers(name)}
    )  # fmt: skip
    x = np.random.default_rng(1).standard_normal((4, *s.input_shape))
    theory = network_kernels(s, x).ntk
    net = build_network(s, width=256, ensemble=8, seed=3)
    emp = probes.empirical_ntk(net, torch.tensor(x)).reshape(8, 4, 4).numpy()
    mean, sem = emp.mean(0), emp.std(0, ddof=1) / np.sqrt(8)
    assert (np.abs(theory - mean) <= 4.5 * sem + 0.03 * np.abs(theory).max()).all()


@pytest.mark.parametrize("name", ["FC", "CNN-P", "CNN residual"])
def test_standard_ntk_matches_empirical_ntk(name):
    """Standard parameterisation (gradients w.r.t. the raw weights, so the NTK grows with the
    fan-in): the empirical NTK of 8 networks whose spec widths are the simulated 256."""
    layers = _raw_layers(name)
    if name == "CNN residual":
        layers = [*layers, {"pool": "global_avg"}, {"dense": {"width": 1}}]
    wide = json.loads(json.dumps(layers).replace('": 32', '": 256'))
    s = spec(wide, [8] if name == "FC" else [3, 6])
    x = np.random.default_rng(1).standard_normal((4, *s.input_shape))
    theory = network_kernels(s, x, parameterization="standard").ntk
    net = build_network(s, ensemble=8, seed=3)
    emp = probes.empirical_ntk(net, torch.tensor(x), "standard").reshape(8, 4, 4).numpy()
    mean, sem = emp.mean(0), emp.std(0, ddof=1) / np.sqrt(8)
    assert (np.abs(theory - mean) <= 4.5 * sem + 0.03 * np.abs(theory).max()).all()


def _raw_layers(name):
    if name == "CNN residual":
        block = {"residual": {"scale": 0.8, "body": [CONV, {"act": "relu"}]}}
        return [CONV, {"repeat": {"times": 2, "body": [block]}}]
    if name == "FC":
        return [
            {"dense": {"width": 32}},
            {"repeat": {"times": 2, "body": [{"act": "erf"}, {"dense": {"width": 32}}]}},
            {"act": "relu"},
            {"dense": {"width": 1}},
        ]
    if name == "CNN-P":
        return [
            CONV,
            {"act": "erf"},
            CONV,
            {"act": "relu"},
            {"pool": "global_avg"},
            {"dense": {"width": 1}},
        ]
    return [
        {"dense": {"width": 32}},
        {
            "repeat": {
                "times": 2,
                "body": [
                    {
                        "residual": {
                            "scale": 0.7,
                            "body": [{"dense": {"width": 32}}, {"act": "relu"}],
                        }
                    }
                ],
            }
        },
        {"dense": {"width": 1}},
    ]


def test_full_spatial_kernels_are_symmetric_over_input_pixel_pairs():
    """K(a, α; b, β) = K(b, β; a, α) for every node kind in full mode: a residual body with a
    nonzero mean per pixel (relu) once paired the means' pixels the wrong way round."""
    s = spec(_raw_layers("CNN residual"), [3, 6], 1.2, 0.1)  # ends pixel-resolved
    x = np.random.default_rng(12).standard_normal((3, *s.input_shape))
    result = network_kernels(s, x, mode="full")
    for k in (result.nngp, result.ntk):
        assert np.abs(k - k.transpose(1, 0, 3, 2)).max() <= 1e-13 * np.abs(k).max()


def test_conv_with_kernel_one_equals_dense():
    conv = spec(
        [
            {"conv": {"channels": 16, "kernel": 1}},
            {"act": "tanh"},
            {"conv": {"channels": 16, "kernel": 1}},
            "flatten",
            {"dense": {"width": 3}},
        ],
        [6, 1],
    )
    dense = spec(
        [
            {"dense": {"width": 16}},
            {"act": "tanh"},
            {"dense": {"width": 16}},
            {"dense": {"width": 3}},
        ],
        [6],
    )
    x = np.random.default_rng(2).standard_normal((4, 6))
    a = network_kernels(conv, x[:, :, None])
    b = network_kernels(dense, x)
    assert np.allclose(a.nngp, b.nngp, rtol=1e-13) and np.allclose(a.ntk, b.ntk, rtol=1e-13)


def test_closed_forms_equal_quadrature(monkeypatch):
    """relu and erf kernels by their arc-cosine / arcsine closed forms (the fused program's
    joint dual kernels) against the same network on the general engine with the closed forms
    switched off (quadrature everywhere)."""
    s = SPECS["CNN-P"]
    x = np.random.default_rng(3).standard_normal((3, *s.input_shape))
    exact = network_kernels(s, x)
    monkeypatch.setattr(kernels, "lower", lambda *args: None)
    monkeypatch.setattr(gaussian, "closed_form", lambda *args: None)
    quad = network_kernels(s, x)
    assert np.allclose(quad.nngp, exact.nngp, rtol=1e-11, atol=0)
    assert np.allclose(quad.ntk, exact.ntk, rtol=1e-11, atol=0)


@pytest.mark.parametrize("name", ["FC", "CNN-P", "CNN-F", "residual, relu body"])
def test_float64_equals_50_digit_mpmath(name):
    s = SPECS[name]
    x = np.random.default_rng(4).standard_normal((3, *s.input_shape))
    low, high = network_kernels(s, x), network_kernels(s, x, digits=50)
    for attr in ("nngp", "ntk"):
        ref = getattr(high, attr).astype(float)
        assert np.abs(getattr(low, attr) - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.fixture(scope="module")
def erf_critical():
    point = critical_point(parse_activation("erf"), 0.05)
    return float(point.sigma_w2)


@pytest.mark.parametrize(
    "readout, m, expected", [(None, 5, 3.5), ("flatten", 3, 2.5), ("pool", 3, 10.0)]
)
def test_critical_kappa_limits(erf_critical, readout, m, expected):
    """At criticality κ → (m+2)/2 (FC, CNN-F) and (md+2)/2 (CNN-P, d = 6 pixels), with an
    O(1/l) approach (xiao_bahri eq. 17 and §3.4)."""
    body = [
        {"act": "erf"},
        {"dense": {"width": 8}} if readout is None else {"conv": {"channels": 8, "kernel": 3}},
    ]
    layers = [body[1], {"repeat": {"times": 10, "body": body}}]
    if readout:
        layers += [
            "flatten" if readout == "flatten" else {"pool": "global_avg"},
            {"dense": {"width": 1}},
        ]
    s = spec(layers, [8] if readout is None else [4, 6], erf_critical, 0.05)
    result = ntk_spectrum(s, m, 0.3, [300, 2400])
    assert result.phase == "critical"
    early, late = (abs(r.kappa - expected) for r in result.rows)
    assert late < 0.01 * expected and late < early / 2
    assert result.rows[-1].asymptotic["kappa"] == pytest.approx(expected)
    assert result.rows[-1].eta_max == pytest.approx(2 / result.rows[-1].lambda_max)


def test_chaotic_ntk_becomes_well_conditioned():
    s = spec(
        [
            {"dense": {"width": 8}},
            {"repeat": {"times": 5, "body": [{"act": "erf"}, {"dense": {"width": 8}}]}},
        ],
        [8],
        3.0,
        0.05,
    )
    result = ntk_spectrum(s, 4, 0.5, [5, 200])
    assert result.phase == "chaotic" and result.rows[-1].kappa < 1.01 < result.rows[0].kappa
    assert result.xi_star is not None and result.xi_star > 0


def test_modes_one_hot_and_uniform():
    one_hot = spec(
        [
            {"conv": {"channels": 8, "kernel": 3}},
            {
                "repeat": {
                    "times": 4,
                    "body": [
                        {"act": "tanh"},
                        {"conv": {"channels": 8, "kernel": 3, "variance": [0, 1, 0]}},
                    ],
                }
            },
            "flatten",
            {"dense": {"width": 1}},
        ],
        [4, 8],
    )
    (table,) = conv_modes(one_hot)
    assert all(mode["lambda"] == pytest.approx(1.0) for mode in table.modes)
    assert len({mode["xi"] for mode in table.modes}) == 1
    uniform = spec(
        [
            {"conv": {"channels": 8, "kernel": 3}},
            {
                "repeat": {
                    "times": 4,
                    "body": [{"act": "tanh"}, {"conv": {"channels": 8, "kernel": 3}}],
                }
            },
            "flatten",
            {"dense": {"width": 1}},
        ],
        [4, 8],
    )
    (table,) = conv_modes(uniform)
    for mode in table.modes:
        k = mode["frequency"]
        assert mode["lambda"] == pytest.approx((1 + 2 * np.cos(2 * np.pi * k / 8)) / 3, abs=1e-12)


def test_deep_chaotic_ntk_overflow_is_a_typed_error():
    s = spec(
        [
            {"dense": {"width": 8}},
            {"repeat": {"times": 40000, "body": [{"act": "relu"}, {"dense": {"width": 8}}]}},
        ],
        [8],
        2.5,
        0.0,
    )
    with pytest.raises(TheoryError, match="overflowed"):
        network_kernels(s, np.ones((2, 8)))


def test_mean_predictor_and_gap():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 6))
    theta = a @ a.T + np.eye(6)
    y = rng.standard_normal((6, 2))
    assert np.allclose(mean_predictor(theta, theta, y), y)
    assert np.allclose(mean_predictor(theta, theta, y, time=0.0), 0)
    assert np.allclose(prediction_gap(theta, theta, theta, theta, y), 0)


def test_kernel_cli_writes_npz_with_cross_blocks(tmp_path, capsys):
    import yaml

    s = {
        "name": "c",
        "input": {"shape": [2, 5]},
        "defaults": {"sigma_w2": 1.5, "sigma_b2": 0.05},
        "layers": [
            {"conv": {"channels": 4, "kernel": 3}},
            {"act": "relu"},
            {"conv": {"channels": 4, "kernel": 3}},
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(s))
    x1 = np.random.default_rng(6).standard_normal((3, 2, 5))
    x2 = np.random.default_rng(7).standard_normal((2, 2, 5))
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "x2.npy", x2)
    out = tmp_path / "k.npz"
    assert (
        main(
            [
                "kernel",
                str(path),
                "--inputs",
                str(tmp_path / "x1.npy"),
                "--x2",
                str(tmp_path / "x2.npy"),
                "--out",
                str(out),
                "--repeat",
                "2",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["seconds"] > 0 and summary["arrays"]["nngp"] == [3, 3, 5, 5]
    saved = np.load(out)
    joint = network_kernels(spec_from_dict(s), np.concatenate([x1, x2]))
    assert np.allclose(saved["ntk_x1_x2"], joint.ntk[:3, 3:])
    assert np.allclose(saved["nngp"], joint.nngp[:3, :3])


def test_ntk_spectrum_cli_json(erf_critical, tmp_path, capsys):
    import yaml

    s = {
        "name": "f",
        "input": {"shape": [4]},
        "defaults": {"sigma_w2": erf_critical, "sigma_b2": 0.05},
        "layers": [
            {"dense": {"width": 4}},
            {"repeat": {"times": 3, "body": [{"act": "erf"}, {"dense": {"width": 4}}]}},
        ],
    }
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(s))
    assert (
        main(
            ["ntk-spectrum", str(path), "--m", "4", "--c0", "0.2", "--depths", "1,10,100", "--json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert [d["depth"] for d in result["depths"]] == [1, 10, 100]
    assert result["depths"][-1]["asymptotic"]["kappa"] == 3.0


def test_kernel_cli_digits_store_the_decimal_values(tmp_path, capsys):
    import mpmath

    path = tmp_path / "f.yaml"
    path.write_text(
        "name: f\ninput: {shape: [3]}\ndefaults: {sigma_w2: 1.5, sigma_b2: 0.05}\n"
        "layers:\n  - dense: {width: 8}\n  - act: erf\n  - dense: {width: 8}\n"
    )
    x = np.array([[1.0, 0.5, -0.25], [0.5, 0.5, 2.0]])
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "k.npz"
    argv = ["kernel", str(path), "--inputs", str(tmp_path / "x.npy"), "--out", str(out)]
    assert main([*argv, "--digits", "30", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "exact binary fractions" in summary["note"]
    saved = np.load(out)  # no pickle needed: plain unicode arrays
    assert saved["nngp_decimal"].shape == (2, 2) and saved["ntk_decimal"].shape == (2, 2)
    c = saved["nngp"][0, 1] / np.sqrt(saved["nngp"][0, 0] * saved["nngp"][1, 1])
    assert saved["one_minus_c"][0, 1] == pytest.approx(1 - c, rel=1e-12)
    assert saved["one_minus_c"][0, 0] == 0
    # the decimal strings are the 30-digit values: erf's arcsine kernel at 40 digits agrees
    with mpmath.workdps(40):
        sw2, sb2 = mpmath.mpf(3) / 2, mpmath.mpf(1) / 20
        k0 = [[sw2 * mpmath.fsum(mpmath.mpf(u) * mpmath.mpf(v) for u, v in zip(a, b)) / 3 + sb2
               for b in x] for a in x]  # fmt: skip
        for a in range(2):
            for b in range(2):
                arg = 2 * k0[a][b] / mpmath.sqrt((1 + 2 * k0[a][a]) * (1 + 2 * k0[b][b]))
                expected = sw2 * 2 / mpmath.pi * mpmath.asin(arg) + sb2
                got = mpmath.mpf(str(saved["nngp_decimal"][a, b]))
                assert abs(got / expected - 1) < 1e-28
                assert float(saved["nngp"][a, b]) == pytest.approx(float(expected), rel=1e-15)
