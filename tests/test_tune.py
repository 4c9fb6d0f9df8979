import numpy as np
import pytest
import yaml
from torch import nn

import workbench.init as wi
from workbench.analysis import analyze_spec
from workbench.cli import main
from workbench.compile import load_spec
from workbench.errors import TheoryError, UnsupportedError, WorkbenchError
from workbench.gaussian import expect
from workbench.precision import F64
from workbench.theory.fc_maps import body_steps
from workbench.tune import tune_spec, write_tuned


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_tune_lands_on_the_critical_line(name, tmp_path):
    tuned = tune_spec(f"derivations/{name}-fc-critical.yaml", sigma_b2=0.1)
    out = write_tuned(tuned, tmp_path / "tuned.yaml")
    spec = load_spec(out)  # the written spec loads, and its own analysis is critical
    (block,) = analyze_spec(spec).to_dict()["blocks"]
    assert abs(block["chi_1"] - 1) < 1e-10 and block["phase"] == "critical"
    # independently: sigma_w2 E[phi'(u)^2] = 1 at the q* the tuned spec settles at
    (step,) = body_steps(_repeat(spec).body)
    d = step.phi.derivative()
    q = block["q_star"]
    assert tuned.sigma_w2 * float(expect(d, d, q, q, q, F64)) == pytest.approx(1, abs=1e-10)
    assert yaml.safe_load(out.read_text())["defaults"]["sigma_b2"] == 0.1


def _repeat(spec):
    return next(layer for layer in spec.layers if layer.kind == "repeat")


def test_tune_through_a_q_star_and_to_a_depth_scale():
    tuned = tune_spec("derivations/tanh-fc-critical.yaml", q_star=0.5)
    assert tuned.analysis["q_star"] == pytest.approx(0.5, rel=1e-10)
    assert abs(tuned.analysis["chi_1"] - 1) < 1e-10
    chaotic = tune_spec("derivations/tanh-fc-critical.yaml", target="chi_1=1.5")
    assert abs(chaotic.analysis["chi_1"] - 1.5) < 1e-10 and chaotic.analysis["phase"] == "chaotic"
    deep = tune_spec("derivations/tanh-fc-critical.yaml", target="xi_c=30")
    assert deep.analysis["xi_c"] == pytest.approx(30, rel=1e-8)
    assert deep.analysis["phase"] == "ordered"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"q_star": 0.5, "sigma_b2": 0.1}, WorkbenchError, "not both"),
    ({"q_star": 1e-4, "spec": "sigmoid-fc-theorem1"}, TheoryError, "sigma_b2 = .* < 0"),
    ({"target": "xi_q=3"}, WorkbenchError, "unknown target"),
    ({"target": "xi_c=1e-9"}, TheoryError, "below xi_c"),
])  # fmt: skip
def test_tune_refuses_what_has_no_answer(kwargs, error, message):
    name = kwargs.pop("spec", "tanh-fc-critical")
    with pytest.raises(error, match=message):
        tune_spec(f"derivations/{name}.yaml", **kwargs)


def test_tune_cli_and_its_refusals(tmp_path, capsys):
    assert main(["tune", "derivations/erf-fc-critical.yaml", "-o", str(tmp_path / "t.yaml")]) == 0
    assert "chi_1 = 1" in capsys.readouterr().out
    assert main(["tune", "derivations/relu-fc-he.yaml", "--sigma-b2", "0.1"]) == 2
    assert "no critical point" in capsys.readouterr().err
    assert main(["tune", "derivations/bn-fisher-fc.yaml"]) == 2
    assert "the block batch-normalises" in capsys.readouterr().err


def _mlp(depth=50, d=32, width=256):
    layers = []
    for i in range(depth):
        layers += [nn.Linear(d if i == 0 else width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def test_init_apply_then_check_a_50_layer_mlp():
    tuned = tune_spec("derivations/tanh-fc-critical.yaml")
    model = wi.apply(_mlp(), tuned, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 32))
    found = wi.check(model, x, tuned, draws=12)
    assert found.passed and len(found.layers) == 51
    assert found.q_theory[-1] == pytest.approx(tuned.analysis["q_star"], rel=1e-6)
    # a model drawn with other variances is caught
    wrong = wi.apply(_mlp(), {"sigma_w2": 2.6, "sigma_b2": 0.05}, seed=0)
    assert not wi.check(wrong, x, tuned, draws=12).passed


def test_init_refuses_models_it_cannot_match(tmp_path):
    with pytest.raises(WorkbenchError, match="weight layers"):
        wi.apply(_mlp(depth=3), load_spec("derivations/tanh-fc-critical.yaml"))
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedError, match="Dropout"):
        wi.check(model, np.ones((2, 4)), {"sigma_w2": 1.0})


def test_the_written_spec_keeps_its_other_numbers(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ninput: {shape: [8]}\ndefaults: {sigma_w2: 1.5, sigma_b2: 0.05}\nlayers:\n"
        "  - dense: {width: 8, sigma_w2: 2.5, sigma_b2: 0.25}\n"
        "  - repeat: {times: 4, body: [{act: tanh}, {dense: {width: 8}}]}\n"
    )
    out = write_tuned(tune_spec(spec), tmp_path / "t.yaml")  # exact decimals: plain numbers
    first = yaml.safe_load(out.read_text())["layers"][0]["dense"]
    assert first == {"width": 8, "sigma_w2": 2.5, "sigma_b2": 0.25}


def _cnn(depth=8, channels=64, kernel=3, padding_mode="circular"):
    layers = [nn.Conv2d(3, channels, kernel, padding=kernel // 2, padding_mode=padding_mode),
              nn.Tanh()]  # fmt: skip
    for _ in range(depth - 1):
        layers += [nn.Conv2d(channels, channels, kernel, padding=kernel // 2,
                             padding_mode=padding_mode), nn.Tanh()]  # fmt: skip
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 36, 10))


def test_init_check_a_conv_net_against_the_conv_theory():
    """A circular-padding CNN drawn at the critical variances: every layer's q and c within
    the spread of fresh copies of the conv theory (xiao2018 eq. 2.5); the same model at other
    variances is caught, and zero padding (not the theory's convolution) is refused."""
    source = {"sigma_w2": 1.76, "sigma_b2": 0.05}
    x = np.random.default_rng(0).standard_normal((3, 3, 6, 6))
    found = wi.check(wi.apply(_cnn(), source, seed=0), x, source, draws=8)
    assert found.passed and len(found.layers) == 9
    assert (np.diff(found.c_theory) > 0).all()  # the pixels' correlations spread with depth
    wrong = wi.apply(_cnn(), {"sigma_w2": 3.0, "sigma_b2": 0.05}, seed=0)
    assert not wi.check(wrong, x, source, draws=8).passed
    with pytest.raises(UnsupportedError, match="circular"):
        wi.check(_cnn(depth=2, padding_mode="zeros"), x, source)
