"""The fused kernel program for chain specs against the general engine (an independent
implementation of the same rules through the Gaussian-expectation engine), its joint dual
kernels against the pairwise closed forms, and which specs it takes."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from spec_factory import make_spec

import workbench.theory.evaluate as kernels
from workbench.activations import Activation, X, parse_activation
from workbench.compile import spec_from_dict
from workbench.gaussian.closed_forms import closed_form, joint_dual
from workbench.precision import F64
from workbench.theory.evaluate import network_kernels
from workbench.theory.kernel_program import lower, pack, unpack


def spec(layers, shape, sw2=1.5, sb2=0.05):
    return make_spec(layers, shape, sw2, sb2, name="p")


def general(monkeypatch, *args, **kwargs):
    """The general engine's answer (the program switched off)."""
    with monkeypatch.context() as patch:
        patch.setattr(kernels, "lower", lambda *a: None)
        return network_kernels(*args, **kwargs)


@pytest.mark.parametrize(
    "expr",
    [sp.Max(0, X), 2 * sp.Max(0, 3 * X), -sp.Max(0, X) / 2, sp.erf(X), 3 * sp.erf(X / 2),
     sp.erf(-2 * X), X, -X / 3],
)  # fmt: skip
def test_joint_dual_equals_pairwise_closed_forms(expr):
    dual = joint_dual(expr)
    phi = Activation("phi", expr)
    d = phi.derivative()
    rng = np.random.default_rng(0)
    q1, q2 = rng.uniform(0.05, 5, 400), rng.uniform(0.05, 5, 400)
    c = np.concatenate([rng.uniform(-1, 1, 396), [1.0, -1.0, 0.999999, -0.999999]])
    q12 = c * np.sqrt(q1 * q2)
    q2[396:] = q1[396:]  # exactly (anti)correlated pairs with equal variances
    q12[396:] = c[396:] * q1[396:]
    gg = dual.prepare(q1) * dual.prepare(q2)
    t, t_dot = (dual.scale * v for v in dual.pair(gg, q12, (None,) * 4))
    in_place = dual.pair(gg, q12, np.empty((4, 400)))
    assert np.array_equal(in_place[0] * dual.scale, t)
    assert np.array_equal(in_place[1] * dual.scale, t_dot)
    t_ref = closed_form(phi.expr, phi.expr, F64)(q1, q12, q2)
    t_dot_ref = closed_form(d.expr, d.expr, F64)(q1, q12, q2)
    assert np.allclose(t, t_ref, rtol=1e-12, atol=1e-14)
    assert np.allclose(t_dot, t_dot_ref, rtol=1e-7 if expr.has(sp.Max) else 1e-12, atol=1e-14)


def test_joint_dual_only_for_its_families():
    for name in ("tanh", "gelu", "sigmoid", "abs"):
        assert joint_dual(parse_activation(name).expr) is None


CONV = {"conv": {"channels": 8, "kernel": 3}}
CHAINS = {
    "FC relu": spec(
        [
            {"dense": {"width": 8}},
            {"repeat": {"times": 6, "body": [{"act": "relu"}, {"dense": {"width": 8}}]}},
        ],
        [5],
        1.9,
        0.1,
    ),  # fmt: skip
    "FC scaled erf, mixed widths": spec(
        [
            {"dense": {"width": 4}},
            {"act": "3*erf(x/2)"},
            {"dense": {"width": 9}},
            {"repeat": {"times": 4, "body": [{"act": "erf"}, {"dense": {"width": 9}}]}},
            {"act": "erf"},
        ],
        [5],
        2.5,
        0.2,
    ),  # fmt: skip
    "FC linear then relu": spec(
        [
            {"dense": {"width": 4}},
            {"act": "-x/2"},
            {"dense": {"width": 4}},
            {"act": "2*relu(3*x)"},
            {"dense": {"width": 3}},
        ],
        [5],
    ),  # fmt: skip
    "CNN-F 1D": spec(
        [
            CONV,
            {"repeat": {"times": 4, "body": [{"act": "relu"}, CONV]}},
            {"act": "erf"},
            "flatten",
            {"dense": {"width": 2}},
        ],
        [3, 7],
    ),  # fmt: skip
    "CNN-P 1D, variance vector": spec(
        [
            {"conv": {"channels": 8, "kernel": 3, "variance": [0.2, 0.5, 0.3]}},
            {
                "repeat": {
                    "times": 3,
                    "body": [{"act": "erf"}, {"conv": {"channels": 8, "kernel": 5}}],
                }
            },
            {"act": "relu"},
            {"pool": "global_avg"},
            {"dense": {"width": 2}},
        ],
        [2, 6],
    ),  # fmt: skip
    "CNN-P 2D": spec(
        [
            {"conv": {"channels": 8, "kernel": [3, 3]}},
            {"act": "relu"},
            {"conv": {"channels": 8, "kernel": [3, 1]}},
            {"act": "erf"},
            {"pool": "global_avg"},
        ],
        [2, 4, 3],
    ),  # fmt: skip
    "CNN-F 2D, delta variance": spec(
        [
            {"conv": {"channels": 8, "kernel": [3, 3], "variance": [0, 0, 0, 0, 1, 0, 0, 0, 0]}},
            {"act": "relu"},
            {"conv": {"channels": 8, "kernel": [3, 3]}},
            {"act": "relu"},
            "flatten",
        ],
        [2, 4, 4],
    ),  # fmt: skip
    "conv output (spatial)": spec([CONV, {"act": "relu"}, CONV], [2, 5]),
    "nested repeats": spec(
        [
            {"dense": {"width": 6}},
            {
                "repeat": {
                    "times": 3,
                    "body": [
                        {
                            "repeat": {
                                "times": 2,
                                "body": [{"act": "relu"}, {"dense": {"width": 6}}],
                            }
                        },
                        {"act": "erf"},
                        {"dense": {"width": 6}},
                    ],
                }
            },
        ],
        [4],
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_program_equals_general_engine(monkeypatch, name, parameterization):
    s = CHAINS[name]
    m = 5
    assert lower(s, m, "full" if len(s.input_shape) > 1 else "flat", parameterization, True)
    x = np.random.default_rng(1).standard_normal((m, *s.input_shape))
    for mode in ("auto", "full") if len(s.input_shape) > 1 else ("auto",):
        fast = network_kernels(s, x, parameterization=parameterization, mode=mode)
        slow = general(monkeypatch, s, x, parameterization=parameterization, mode=mode)
        assert fast.mode == slow.mode
        for attr in ("nngp", "ntk"):
            a, b = getattr(fast, attr), getattr(slow, attr)
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= 1e-11 * np.abs(b).max(), (name, mode, attr)


def test_program_without_ntk(monkeypatch):
    s = CHAINS["CNN-F 1D"]
    x = np.random.default_rng(2).standard_normal((4, *s.input_shape))
    fast = network_kernels(s, x, ntk=False)
    assert fast.ntk is None
    assert np.allclose(fast.nngp, general(monkeypatch, s, x, ntk=False).nngp, rtol=1e-12)


def test_zero_input_falls_back_to_the_general_engine(monkeypatch):
    s = spec([{"dense": {"width": 4}}, {"act": "relu"}, {"dense": {"width": 4}}], [3], 2.0, 0.0)
    x = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 0.3, 2.0]])
    fast = network_kernels(s, x)
    slow = general(monkeypatch, s, x)
    assert np.isfinite(fast.ntk).all() and np.array_equal(fast.ntk, slow.ntk)


@pytest.mark.parametrize(
    "layers",
    [
        [{"dense": {"width": 4}}, {"act": "tanh"}, {"dense": {"width": 4}}],  # no closed form
        [{"act": "relu"}, {"dense": {"width": 4}}],  # activation of the raw input
        [{"dense": {"width": 4}}, {"act": "relu"}, {"act": "relu"}],  # composed activations
        [{"dense": {"width": 4}}, {"bn": {}}, {"act": "relu"}],
        [{"dense": {"width": 4}}, {"repeat": {"times": 2, "body": [{"act": "relu"}]}}],
        [
            {"dense": {"width": 4}},
            {"residual": {"body": [{"dense": {"width": 4}}, {"act": "relu"}]}},
        ],  # fmt: skip
    ],
)
def test_other_specs_are_left_to_the_general_engine(layers):
    assert lower(spec(layers, [3]), 2, "flat", "ntk", True) is None


def test_pack_unpack_round_trip():
    """A symmetric kernel over (input, pixel) pairs survives packing its input pairs a ≤ b."""
    rng = np.random.default_rng(3)
    k = rng.standard_normal((4 * 15, 4 * 15))
    k = (k + k.T).reshape(4, 3, 5, 4, 3, 5).transpose(0, 3, 1, 2, 4, 5)
    assert pack(k).shape == (10, 3, 5, 3, 5)
    assert np.array_equal(unpack(pack(k), 4, "full"), k)
    diagonal = np.ascontiguousarray(np.diagonal(k.reshape(4, 4, 15, 15), axis1=2, axis2=3))
    assert np.array_equal(unpack(pack(diagonal), 4, "diagonal"), diagonal)


def test_compiled_program_from_the_cli(tmp_path, capsys):
    """``kernel --compile``: torch.compile traces the same steps bound without buffers; the
    kernels equal the eager program's. Without a C++ compiler torch.compile fails and the
    run falls back to eager numpy, saying so in the notes."""
    import json
    import shutil

    import yaml

    from workbench.cli import main

    layers = [CONV, {"repeat": {"times": 2, "body": [{"act": "relu"}, CONV]}}, {"act": "erf"},
              "flatten", {"dense": {"width": 2}}]  # fmt: skip
    s = {"name": "c", "input": {"shape": [2, 5]}, "defaults": {"sigma_w2": 1.5, "sigma_b2": 0.1},
         "layers": layers}  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(s))
    x = np.random.default_rng(8).standard_normal((3, 2, 5))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "k.npz"
    argv = ["kernel", str(path), "--inputs", str(tmp_path / "x.npy"), "--out", str(out)]
    assert main([*argv, "--compile", "--repeat", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["compile_seconds"] > 0 and summary["seconds"] > 0
    if shutil.which("c++") or shutil.which("g++"):
        notes = [n for n in summary["notes"] if not n.startswith("one_minus_c")]
        assert not notes, notes
    eager = network_kernels(spec_from_dict(s), x)
    saved = np.load(out)
    for name in ("nngp", "ntk"):
        ref = getattr(eager, name)
        assert np.abs(saved[name] - ref).max() <= 1e-13 * np.abs(ref).max()


def test_compiled_request_on_the_general_engine_says_so():
    s = spec([{"dense": {"width": 4}}, {"act": "tanh"}, {"dense": {"width": 4}}], [3])
    x = np.random.default_rng(9).standard_normal((3, 3))
    notes = network_kernels(s, x, compiled=True).notes
    assert any("not compiled: only chain specs" in n for n in notes)
    relu = spec([{"dense": {"width": 4}}, {"act": "relu"}, {"dense": {"width": 4}}], [3])
    notes = network_kernels(relu, x, compiled=True, digits=20).notes
    assert any("not compiled: high-precision" in n for n in notes)
    notes = network_kernels(relu, x, compiled=True).notes
    assert any("not compiled: flat programs run faster eagerly" in n for n in notes)
    pooled = spec([CONV, {"act": "relu"}, {"pool": "global_avg"}, {"dense": {"width": 2}}], [2, 5])
    cnn_x = np.random.default_rng(9).standard_normal((3, 2, 5))
    notes = network_kernels(pooled, cnn_x, compiled=True).notes
    assert any("not compiled: pixel-pair kernels run faster eagerly" in n for n in notes)


def test_overflow_is_named_by_the_program_itself_without_a_second_engine(monkeypatch):
    """Deep in the chaotic phase the fused program raises, naming the repeat block and the
    pass; the general engine is not asked to recompute."""
    from workbench.errors import TheoryError
    from workbench.theory import evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("the general engine recomputed the kernels")

    monkeypatch.setattr(evaluate.Evaluator, "propagate", refuse)
    s = spec([{"dense": {"width": 8}},
              {"repeat": {"times": 40000, "body": [{"act": "relu"}, {"dense": {"width": 8}}]}}],
             [8], 2.5, 0.0)  # fmt: skip
    with pytest.raises(TheoryError, match=r"layers\[1\]: the kernel overflowed float64 after"):
        network_kernels(s, np.ones((2, 8)))
