"""``workbench derive``: every node kind's symbolic rule, evaluated numerically (sympy →
mpmath: closed forms by evalf, Gaussian integrals by mpmath quadrature of the lambdified
integrand), equals its numeric rule (the Gaussian engine at 30 digits, the node's kernel rule)
to 1e-12 (quadrature at 16 digits, the engine at 20)."""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import sympy as sp

from workbench import notation as n
from workbench.cli import main
from workbench.compile import load_spec, spec_from_dict, spec_graph
from workbench.gaussian import expect
from workbench.gaussian.symbolic import numeric_value
from workbench.nodes.base import rule
from workbench.precision import Mp
from workbench.theory.derive import derive
from workbench.theory.evaluate import Evaluator
from workbench.theory.fc_maps import FCStep, chi_1, step_q
from workbench.theory.state import KernelState

MP = Mp(20)
QA, QB, KAB, THETA, Q, C = 0.7, 1.2, 0.3, 0.45, 0.9, 0.35


def close(symbolic, numeric, rel=1e-12):
    assert abs(symbolic - numeric) <= rel * max(abs(numeric), 1e-30), (symbolic, numeric)


def value(eq, **values):
    subs = {getattr(n, k): sp.Rational(str(v)) for k, v in values.items()}
    return numeric_value(eq.rhs.xreplace(subs))


def pair_state(phi, channels=16):
    """Two inputs, variances QA, QB, covariance KAB, NTK THETA, with φ pending."""
    k = MP.array([[QA, KAB], [KAB, QB]])
    t = MP.array([[THETA, THETA], [THETA, THETA]])
    return KernelState(k, t, MP.array([0, 0]), "flat", (), channels, field_nngp=k,
                       field_ntk=t, phi=phi, ctx=MP)  # fmt: skip


def fc_spec(phi):
    return spec_from_dict(
        {
            "name": f"fc-{phi}",
            "input": {"shape": [7]},
            "layers": [
                {"dense": {"width": 16, "sigma_w2": 1.7, "sigma_b2": 0.05}},
                {"act": phi},
                {"dense": {"width": 16, "sigma_w2": 1.3, "sigma_b2": 0.1}},
            ],
        }
    )


@pytest.mark.parametrize("phi", ["tanh", "erf", "relu", {"expr": "3 * erf(x / 2)"}])
def test_weight_layer_and_activation_rules(phi):
    spec = fc_spec(phi)
    stages = derive(spec).stages
    act, dense = stages[1], stages[2]
    node = spec.layers[2]
    activation = spec.layers[1].activation
    for parameterization, name in (("ntk", "ntk"), ("standard", "ntk_standard")):
        out = rule(node, "kernel")(node, pair_state(activation), Evaluator(parameterization), {})
        vals = {"q_a": QA, "q_b": QB, "K": KAB, "Theta": THETA}
        close(value(dense.rules["nngp"], **vals), out.nngp[0, 1])
        k_next = dense.rules["nngp"].rhs.xreplace(
            {n.q_a: sp.Rational(str(QA)), n.q_b: sp.Rational(str(QB)), n.K: sp.Rational(str(KAB))}
        )
        close(value(dense.rules[name].subs(n.K_next, k_next), **vals), out.ntk[0, 1])
    realized = Evaluator().realized(pair_state(activation))
    close(value(act.rules["T"], q_a=QA, q_b=QB, K=KAB), realized.nngp[0, 1])
    close(value(act.rules["T_dot"], q_a=QA, q_b=QB, K=KAB), realized.ntk[0, 1] / THETA)
    step = FCStep(node.sigma_w2, node.sigma_b2, activation)
    with MP.active():
        q_next = step_q(step, mpmath.mpf(Q), MP)
        close(value(dense.rules["q_map"], q=Q), q_next)
        close(value(dense.rules["chi_1"], q=Q), chi_1((step,), mpmath.mpf(Q), MP))
        q12 = expect(activation, activation, mpmath.mpf(Q), mpmath.mpf(C) * Q, mpmath.mpf(Q), MP)
        c_next = (node.sigma_w2 * q12 + node.sigma_b2) / q_next
        c_rule = dense.rules["c_map"].subs(n.q_next, sp.Float(q_next, 30))
        close(value(c_rule, q=Q, c=C), c_next)


def test_conv_rule_with_its_variance_vector():
    spec = spec_from_dict(
        {
            "name": "conv-v",
            "input": {"shape": [3, 7]},
            "layers": [
                {"conv": {"channels": 8, "kernel": 3, "sigma_w2": 1.4, "sigma_b2": 0.1}},
                {"act": "erf"},
                {"conv": {"channels": 8, "kernel": 3, "variance": [0.2, 0.5, 0.3],
                          "sigma_w2": 1.6, "sigma_b2": 0.05}},
            ],
        }
    )  # fmt: skip
    graph = spec_graph(spec)
    x = np.random.default_rng(0).standard_normal((2, 3, 7))
    from workbench.theory.evaluate import initial_state

    ev = Evaluator()
    state = initial_state(x, "full", True, MP)
    names = list(graph.nodes)
    for name in names[:2]:
        state = rule(graph.nodes[name]["node"], "kernel")(graph.nodes[name]["node"], state, ev, {})
    realized = ev.realized(state)
    node = graph.nodes[names[2]]["node"]
    out = rule(node, "kernel")(node, state, ev, {})
    nngp_rule = derive(spec).stages[2].rules["nngp"]
    t = realized.nngp[0, 1]  # T(K)[α, α′] of the pair (a, b) = (0, 1)
    for a, b in [(0, 0), (2, 5), (6, 1)]:
        expr = nngp_rule.rhs.xreplace({n.alpha: a, n.alpha2: b})
        expr = expr.replace(n.T, lambda i, j: sp.Float(t[int(i) % 7, int(j) % 7], 30))
        close(numeric_value(expr), out.nngp[0, 1, a, b])


def _raw(spec):
    conv = {"conv": {"channels": 4, "kernel": 3, "sigma_w2": 1.0, "sigma_b2": 0.0}}
    return {"name": spec.name, "input": {"shape": list(spec.input_shape)}, "layers": [conv]}


def test_readouts_residual_and_batch_norm():
    spec = load_spec("tests/specs/conv2d_resnet.yaml")
    stages = {s.path: s for s in derive(spec).stages}
    # pool and flatten: the means over all pixel pairs and over same-pixel pairs
    small = spec_from_dict(
        {
            "name": "readouts",
            "input": {"shape": [2, 4]},
            "layers": [{"conv": {"channels": 4, "kernel": 3, "sigma_w2": 1.0, "sigma_b2": 0.0}},
                       {"pool": "global_avg"}],
        }
    )  # fmt: skip
    dense = {"dense": {"width": 3, "sigma_w2": 1, "sigma_b2": 0}}
    flat = spec_from_dict({**_raw(small), "layers": [_raw(small)["layers"][0], "flatten", dense]})
    k = np.random.default_rng(1).standard_normal((4, 4))
    table = sp.IndexedBase(n.K_in.label)
    values = {table[i, j]: sp.Float(k[i, j], 30) for i in range(4) for j in range(4)}
    pool = derive(small).stages[1].rules["nngp"].rhs.doit().xreplace(values)
    close(float(pool), k.mean(), 1e-14)
    flatten = derive(flat).stages[1].rules["nngp"].rhs.doit().xreplace(values)
    close(float(flatten), np.trace(k) / 4, 1e-14)
    # residual: K_y = K_x + s (m_x m_b' + m_b m_x') + s² K_b, against the node's kernel rule
    flat = spec_from_dict(
        {
            "name": "res",
            "input": {"shape": [5]},
            "layers": [
                {"dense": {"width": 8, "sigma_w2": 1.5, "sigma_b2": 0.2}},
                {"act": "relu"},
                {"residual": {"scale": 0.7, "body": [{"dense": {"width": 8}}, {"act": "relu"}]}},
            ],
            "defaults": {"sigma_w2": 1.2, "sigma_b2": 0.1},
        }
    )
    graph = spec_graph(flat)
    from workbench.theory.evaluate import initial_state

    ev = Evaluator()
    x = np.random.default_rng(2).standard_normal((2, 5))
    state = initial_state(x, "flat", True)
    names = list(graph.nodes)
    for name in names[:2]:
        node = graph.nodes[name]["node"]
        state = rule(node, "kernel")(node, state, ev, {})
    stream = ev.realized(state)
    res_attrs = graph.nodes[names[2]]
    body = ev.realized(ev.propagate(res_attrs["body"], stream))
    out = rule(res_attrs["node"], "kernel")(res_attrs["node"], state, ev, res_attrs)
    res_rule = derive(flat).stages[2].rules
    subs = {
        n.K_x: stream.nngp[0, 1], n.K_b: body.nngp[0, 1],
        n.m_x: stream.mean[0], n.m_x2: stream.mean[1], n.m_b: body.mean[0], n.m_b2: body.mean[1],
        n.Theta_x: stream.ntk[0, 1], n.Theta_b: body.ntk[0, 1],
    }  # fmt: skip
    close(float(res_rule["nngp"].rhs.xreplace(subs)), out.nngp[0, 1])
    close(float(res_rule["ntk"].rhs.xreplace(subs)), out.ntk[0, 1])
    # batch norm: exact for an equicorrelated batch of N
    bn_node = spec.layers[3].body[0].body[1]
    bn_rules = stages[bn_node.path].rules
    for size in (3, 8):
        kernel = 0.8 * ((1 - 0.4) * np.eye(size) + 0.4)
        batch = KernelState(kernel, None, np.zeros(size), "flat", (), 4)
        out = rule(bn_node, "kernel")(bn_node, batch, ev, {})
        big_n = sp.Symbol("N", positive=True, integer=True)
        close(float(bn_rules["q_equicorrelated"].rhs), out.nngp[0, 0], 1e-10)
        off = bn_rules["nngp_equicorrelated"].rhs.subs(big_n, size)
        close(float(off), out.nngp[0, 1], 1e-9)


@pytest.mark.parametrize(
    "path",
    [
        "derivations/tanh-fc-critical.yaml",
        "tests/specs/conv1d.yaml",
        "tests/specs/conv2d_resnet.yaml",
        "tests/specs/fc_erf.json",
    ],
)
def test_cli_prints_every_stage(path, capsys):
    assert main(["derive", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    spec = load_spec(path)
    from workbench.nodes.base import flat_nodes

    assert [s["path"] for s in out["stages"]] == [node.path for node in flat_nodes(spec.layers)]
    for stage in out["stages"]:
        for text in stage["rules"].values():
            assert text and "nan" not in text.lower()
    assert main(["derive", path, "--latex"]) == 0
    assert "\\" in capsys.readouterr().out


def _walked(spec, x, ctx=MP):
    """Every top-level node's input/output states and its numeric backward map of a positive
    symmetric G̃ near 1 (at ``ctx``)."""
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import initial_state

    ev = Evaluator()
    mode = "flat" if len(spec.input_shape) == 1 else "full"
    with ctx.active():
        _, frame = ev.record(spec_graph(spec), initial_state(x, mode, False, ctx))
        ev.learning = False
        walk = BackwardWalk(ev, ctx)
        rng = np.random.default_rng(4)
        out = []
        for entry in frame:
            shape = (entry.out.field_nngp if entry.out.phi is not None else entry.out.nngp).shape
            g = rng.standard_normal(shape)
            g = 1 + 0.15 * (g + np.swapaxes(g, 0, 1))
            cot = rule(entry.node, "backward")(entry.node, Cotangent(ctx.array(g)), walk, entry, "")
            out.append((entry, g, cot.grad))
    return out


def test_backward_rules_symbolic_equal_numeric():
    """Each backward rule's symbolic form (``workbench derive``) evaluated at the recorded
    states equals the node's numeric backward map, to 1e-12: dense σ_w² G̃, the activation's
    Ṫ(K) G̃ (erf's closed form), layer norm's γ² G̃/√(v_a v_b), the conv's transposed A_v at
    three pixel pairs, and the pool's G̃/n² spread."""
    fc = spec_from_dict({"name": "fc", "input": {"shape": [5]}, "layers": [
        {"dense": {"width": 8, "sigma_w2": 1.7, "sigma_b2": 0.1}}, {"act": "erf"},
        {"dense": {"width": 8, "sigma_w2": 1.3, "sigma_b2": 0.2}},
        {"layernorm": {"gamma": 1.4, "beta": 0.3}}, {"dense": {"width": 2}}],
        "defaults": {"sigma_w2": 1.0, "sigma_b2": 0.0}})  # fmt: skip
    rules = [s.rules for s in derive(fc).stages]
    x = np.random.default_rng(0).standard_normal((2, 5))
    walked = _walked(fc, x)
    entry, g, back = walked[0]
    close(value(rules[0]["backward"], G_out=g[0, 1]), back[0, 1])
    entry, g, back = walked[1]
    k = entry.out.field_nngp
    close(value(rules[1]["backward"], q_a=k[0, 0], q_b=k[1, 1], K=k[0, 1], G_out=g[0, 1]),
          back[0, 1])  # fmt: skip
    entry, g, back = walked[3]
    k, m = entry.inp.nngp, entry.inp.mean
    vals = {"q_a": k[0, 0], "q_b": k[1, 1], "m_x": m[0], "m_x2": m[1], "G_out": g[0, 1]}
    close(value(rules[3]["backward"], **vals), back[0, 1])

    cnn = spec_from_dict({"name": "cnn", "input": {"shape": [2, 5]}, "layers": [
        {"conv": {"channels": 3, "kernel": 3, "variance": [0.2, 0.5, 0.3], "sigma_w2": 1.6,
                  "sigma_b2": 0.05}}, {"pool": "global_avg"}, {"dense": {"width": 2}}],
        "defaults": {"sigma_w2": 1.0, "sigma_b2": 0.0}})  # fmt: skip
    stages = [s.rules for s in derive(cnn).stages]
    walked = _walked(cnn, np.random.default_rng(1).standard_normal((2, 2, 5)))
    entry, g, back = walked[0]
    table = {n.G_out_px[i, j]: sp.Float(g[0, 1, i % 5, j % 5], 30)
             for i in range(-2, 8) for j in range(-2, 8)}  # fmt: skip
    for a, b in [(0, 0), (1, 4), (3, 2)]:
        expr = stages[0]["backward"].rhs.xreplace({n.alpha: a, n.alpha2: b}).xreplace(table)
        close(numeric_value(expr), back[0, 1, a, b])
    entry, g, back = walked[1]
    close(value(stages[1]["backward"], G_out=g[0, 1]), back[0, 1, 2, 3])
