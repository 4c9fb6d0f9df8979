"""1 − cˡ keeps every digit at depth: float64 evolution against independent 50-digit
references (closed forms iterated in mpmath; for tanh, the gap's Taylor series at c = 1 from
Price's theorem, d^m/dρ^m E[φ(u)φ(v)] = q^m E[φ^(m)(u) φ^(m)(v)], with one-dimensional
integrals of the derivative polynomials of tanh)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.theory.critical import critical_point
from workbench.theory.evolution import evolve_kernel, input_kernel, input_one_minus_c
from workbench.theory.fc_maps import single_step

LAYERS = (10, 100, 1_000, 10_000, 100_000)


def _relu_reference() -> dict[int, mpmath.mpf]:
    """relu at σ_w² = 2, σ_b² = 0 from c⁰ = 0: c ↦ (sin θ + (π − θ) c)/π, 50 digits."""
    out = {}
    with mpmath.workdps(50):
        c = mpmath.mpf(0)
        for layer in range(1, LAYERS[-1] + 1):
            theta = mpmath.acos(c)
            c = (mpmath.sin(theta) + (mpmath.pi - theta) * c) / mpmath.pi
            if layer in LAYERS:
                out[layer] = 1 - c
    return out


def test_relu_edge_of_chaos_keeps_one_minus_c_at_every_depth():
    evolution = evolve_kernel(single_step("relu", 2.0, 0.0), np.eye(2), LAYERS[-1])
    reference = _relu_reference()
    for layer in LAYERS:
        got = evolution.one_minus_c[layer][0]
        assert abs(got / reference[layer] - 1) < 1e-10, layer
    # l² (1 − cˡ) → 9π²/2 (the relu edge-of-chaos law), approached like log(l)/l
    misses = [abs(layer**2 * evolution.one_minus_c[layer][0] / (4.5 * math.pi**2) - 1)
              for layer in LAYERS[2:]]  # fmt: skip
    assert misses[0] > misses[1] > misses[2] and misses[2] < 1e-3
    assert "depth-safely (arc-cosine closed form)" in evolution.notes[0]


def test_erf_critical_line_at_depth_hundred_thousand():
    point = critical_point(parse_activation("erf"), 0.05)
    sw2, q_star = float(point.sigma_w2), float(point.q_star)
    evolution = evolve_kernel(single_step("erf", sw2, 0.05), q_star * np.eye(2), LAYERS[-1])
    reference = {}
    with mpmath.workdps(50):
        w, b = mpmath.mpf(sw2), mpmath.mpf(0.05)
        q, k = mpmath.mpf(q_star), mpmath.mpf(0)
        for layer in range(1, LAYERS[-1] + 1):
            q, k = (w * 2 / mpmath.pi * mpmath.asin(2 * v / (1 + 2 * q)) + b for v in (q, k))
            if layer in LAYERS:
                reference[layer] = 1 - k / q
    for layer in LAYERS:
        assert abs(evolution.one_minus_c[layer][0] / reference[layer] - 1) < 1e-10, layer


def _tanh_derivative_moments(q: mpmath.mpf, count: int) -> list[mpmath.mpf]:
    """E[φ^(m)(u)²], u ~ N(0, q), m = 1 … count, φ = tanh: φ^(m) = P_m(tanh) with
    P_{m+1}(t) = P_m′(t)(1 − t²), P_0(t) = t (integer coefficients)."""
    poly = [0, 1]  # coefficients of t^0, t^1, …
    moments = []
    root = mpmath.sqrt(q)
    for _ in range(count):
        derivative = [i * poly[i] for i in range(1, len(poly))]
        poly = [0] * (len(derivative) + 2)
        for i, coef in enumerate(derivative):
            poly[i] += coef
            poly[i + 2] -= coef
        coefs = [mpmath.mpf(v) for v in reversed(poly)]
        moments.append(
            mpmath.quad(
                lambda z, coefs=coefs: (
                    mpmath.polyval(coefs, mpmath.tanh(root * z)) ** 2 * mpmath.exp(-(z**2) / 2)
                ),
                [-mpmath.inf, -2, 0, 2, mpmath.inf],
            )
            / mpmath.sqrt(2 * mpmath.pi)
        )
    return moments


def test_tanh_critical_line_at_depth_hundred_thousand():
    """From c⁰ = 0.999 (where 20 terms of the Price series reach 50 digits: its terms fall
    like m! (q s/(π/2)²)^m) down the critical line at σ_b² = 0.05. The reference iterates the
    series in 240-bit fixed point (exact integer arithmetic, ~70 digits for these s)."""
    point = critical_point(parse_activation("tanh"), 0.05)
    sw2, q_star = float(point.sigma_w2), float(point.q_star)
    kernel = q_star * np.array([[1.0, 0.999], [0.999, 1.0]])
    evolution = evolve_kernel(single_step("tanh", sw2, 0.05), kernel, LAYERS[-1],
                              one_minus_c=np.array([0.001]))  # fmt: skip
    assert "Mehler series" in evolution.notes[0]
    terms, bits = 20, 240
    with mpmath.workdps(80):  # the derivative polynomials cancel: 30 guard digits
        q = mpmath.mpf(q_star)
        moments = _tanh_derivative_moments(q, terms)
        # s′ = σ_w² G(s)/q* with G(s) = s R(s), R(s) = −Σ_{m≥1} (−q)^m s^{m−1} E[φ^(m)²]/m!
        # (q stays q*: the float64 q* is its own fixed point to 1e-16, which moves s by far
        # less than 1e-10 over these layers)
        w = mpmath.mpf(sw2)
        fixed = [int(mpmath.nint(-w * (-q) ** m * moments[m - 1] / math.factorial(m) / q
                                 * 2**bits)) for m in range(1, terms + 1)]  # fmt: skip
        s = int(mpmath.nint(mpmath.mpf("0.001") * 2**bits))
    reference = {}
    for layer in range(1, LAYERS[-1] + 1):
        r = fixed[-1]
        for coef in reversed(fixed[:-1]):
            r = ((r * s) >> bits) + coef
        s = (r * s) >> bits
        if layer in LAYERS:
            reference[layer] = s / 2**bits
    for layer in LAYERS:
        assert abs(evolution.one_minus_c[layer][0] / reference[layer] - 1) < 1e-10, layer


def test_input_one_minus_c_keeps_nearly_parallel_inputs_apart():
    x = np.random.default_rng(0).standard_normal((3, 50))
    x[1] = x[0] + 1e-9 * x[2]
    x[2] = 3 * x[0]  # parallel, another norm
    got = input_one_minus_c(x, 1.5, 0.2)
    kernel = input_kernel(x, 1.5, 0.2)
    with mpmath.workdps(50):
        xs = [[mpmath.mpf(v) for v in row] for row in x]

        def k(a, b):
            return mpmath.mpf(1.5) * mpmath.fsum(
                u * v for u, v in zip(xs[a], xs[b])
            ) / 50 + mpmath.mpf(0.2)

        for p, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
            expected = 1 - k(a, b) / mpmath.sqrt(k(a, a) * k(b, b))
            assert abs(got[p] / expected - 1) < 1e-12, (a, b)
    naive = 1 - kernel[0, 1] / np.sqrt(kernel[0, 0] * kernel[1, 1])
    assert abs(naive / got[0] - 1) > 1e-6  # what the difference would have lost


@pytest.mark.parametrize("name", ["relu", "tanh", "erf"])
def test_evolve_kernel_reports_one_minus_c_per_layer(name):
    evolution = evolve_kernel(single_step(name, 1.5, 0.1), 0.5 * np.eye(3) + 0.5, 5)
    table = evolution.to_dict()
    assert np.allclose(np.array(table["one_minus_c"]), 1 - np.array(table["c"]), atol=1e-15)
    assert all(np.diag(np.array(m)).max() == 0 for m in table["one_minus_c"])


def _relu_fc_reference(x: np.ndarray, sw2: float, sb2: float, depth: int):
    """NNGP and NTK of a depth-layer relu FC net at 50 digits (arc-cosine kernels, xiao_bahri
    eq. 6, NTK parameterisation), written out independently of the workbench."""
    with mpmath.workdps(50):
        w, b = mpmath.mpf(sw2), mpmath.mpf(sb2)
        rows = [[mpmath.mpf(v) for v in row] for row in x]
        m, d = len(rows), len(rows[0])
        k = [[w * mpmath.fsum(u * v for u, v in zip(rows[i], rows[j])) / d + b for j in range(m)]
             for i in range(m)]  # fmt: skip
        theta = [row[:] for row in k]
        for _ in range(depth - 1):
            new_k = [[None] * m for _ in range(m)]
            new_t = [[None] * m for _ in range(m)]
            for i in range(m):
                for j in range(i, m):
                    root = mpmath.sqrt(k[i][i] * k[j][j])
                    c = min(max(k[i][j] / root, -1), 1)
                    angle = mpmath.acos(c)
                    t = root * (mpmath.sin(angle) + (mpmath.pi - angle) * c) / (2 * mpmath.pi)
                    t_dot = (mpmath.pi - angle) / (2 * mpmath.pi)
                    new_k[i][j] = new_k[j][i] = w * t + b
                    new_t[i][j] = new_t[j][i] = new_k[i][j] + w * t_dot * theta[i][j]
            k, theta = new_k, new_t
        gap = [[1 - k[i][j] / mpmath.sqrt(k[i][i] * k[j][j]) for j in range(m)] for i in range(m)]
        return tuple(np.array([[float(v) for v in row] for row in a]) for a in (k, theta, gap))


def test_relu_fc_kernels_equal_fifty_digits_on_nearly_parallel_pairs(make_spec):
    from workbench.theory.evaluate import network_kernels

    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 16))
    x[1] = x[0] + 1e-7 * x[2]  # nearly equal
    x[3] = x[0] * (1 + 1e-9)  # parallel, nearly the same norm
    x[4] = 2 * x[5] + 1e-8 * x[6]  # nearly parallel, other norm
    x[7] = -x[8] + 1e-6 * x[9]  # nearly antiparallel
    depth = 100
    body = [{"dense": {"width": 8}}, {"act": "relu"}]
    spec = make_spec([*body, {"repeat": {"times": depth - 1, "body": body}},
                      {"dense": {"width": 1}}], shape=(16,), sw2=2.0, sb2=0.05)  # fmt: skip
    got = network_kernels(spec, x)
    nngp, ntk, one_minus_c = _relu_fc_reference(x, 2.0, 0.05, depth + 1)
    assert np.abs(got.nngp / nngp - 1).max() < 1e-12
    assert np.abs(got.ntk / ntk - 1).max() < 1e-12
    # the output's 1 − c is carried too: 1e-13 relative where the inputs' norms differ by more
    # than 1e-6; where they differ by 1e-7 … 1e-9 (pairs 0–1, 0–3, 1–3) the bias's share of the
    # gap, σ_b²(√q_a − √q_b)², is formed from the rounded variances (relative error
    # 1e-16/(q_a − q_b)/q; the norm difference is not carried through the layers)
    miss = np.abs(got.one_minus_c / np.where(one_minus_c > 0, one_minus_c, 1) - 1)
    np.fill_diagonal(miss, 0)
    close = [(0, 1), (0, 3), (1, 3)]
    assert max(miss[a, b] for a, b in close) < 1e-6
    for a, b in close:
        miss[a, b] = miss[b, a] = 0
    assert miss.max() < 1e-13
    assert np.diag(got.one_minus_c).max() == 0


def test_general_engine_carries_one_minus_c_for_smooth_activations(make_spec):
    """A tanh FC net (general engine: Mehler series, then the frozen s-map) carries 1 − c of
    nearly equal inputs like evolve_kernel does; the kernel's entries give it 15% to 14x off."""
    from workbench.theory.evaluate import network_kernels

    depth = 300
    x = np.random.default_rng(0).standard_normal((3, 16))
    x[1] = x[0] + 1e-6 * x[2]
    body = [{"dense": {"width": 8}}, {"act": "tanh"}]
    spec = make_spec([*body, {"repeat": {"times": depth - 1, "body": body}},
                      {"dense": {"width": 8}}], shape=(16,), sw2=1.76, sb2=0.05)  # fmt: skip
    got = network_kernels(spec, x)
    steps = single_step("tanh", 1.76, 0.05)
    evolution = evolve_kernel(steps, input_kernel(x, 1.76, 0.05), depth,
                              one_minus_c=input_one_minus_c(x, 1.76, 0.05))  # fmt: skip
    carried = got.one_minus_c[np.triu_indices(3, 1)]
    assert np.abs(carried / evolution.one_minus_c[-1] - 1).max() < 1e-10
    assert not any(note.startswith("one_minus_c") for note in got.notes)
    root = np.sqrt(np.diag(got.nngp))
    naive = 1 - got.nngp[0, 1] / (root[0] * root[1])
    assert abs(naive / got.one_minus_c[0, 1] - 1) > 0.05  # what the entries lose (15-1400%)


@pytest.mark.parametrize("readout", ["flatten", {"pool": "global_avg"}], ids=["CNN-F", "CNN-P"])
def test_relu_cnn_kernels_equal_fifty_digits_on_nearly_parallel_pairs(readout):
    """CNN-F (same-pixel gaps) and CNN-P (pixel-pair gaps) carry G per (input, pixel) pair
    through the convs (the taps' Cauchy–Schwarz gap by Lagrange's identity) and relu (its
    angle from G): NNGP and NTK equal the general engine at 50 digits to 1e-12 on every entry,
    nearly parallel pairs included (without the gap the NTK was 1.5e-9 off at depth 20)."""
    from workbench.compile import spec_from_dict
    from workbench.theory.evaluate import network_kernels

    conv = {"conv": {"channels": 8, "kernel": 3}}
    layers = [conv, {"repeat": {"times": 20, "body": [{"act": "relu"}, conv]}}, {"act": "relu"},
              readout, {"dense": {"width": 4}}]  # fmt: skip
    spec = spec_from_dict({"name": "c", "input": {"shape": [2, 4]}, "layers": layers,
                           "defaults": {"sigma_w2": 2.0, "sigma_b2": 0.05}})  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4))
    x[1] = x[0] + 1e-6 * rng.standard_normal((2, 4))  # 1 - c of the output ~ 1e-13
    got = network_kernels(spec, x)
    reference = network_kernels(spec, x, digits=50)
    for name in ("nngp", "ntk"):
        ref = getattr(reference, name).astype(float)
        assert np.abs(getattr(got, name) / ref - 1).max() < 1e-12, name
    ref = reference.one_minus_c.astype(float)
    miss = np.abs(got.one_minus_c - ref) / np.where(ref > 0, ref, 1)
    if readout == "flatten":  # carried through the flatten too: 1e-10 relative at 1 - c
        # ~1e-13, where the taps' and pixels' share (b − t a)² is formed from the rounded
        # variances of two inputs 1e-6 apart (as the FC bias's share: see above); the
        # entries give 1e-3
        assert miss.max() < 1e-9 and ref[0, 1] < 1e-12
    else:  # pooling mixes pixel pairs: 1 - c from the pooled entries, said in the notes
        assert any("after the global-average pool" in note for note in got.notes)


@pytest.mark.parametrize("readout", [None, "flatten", {"pool": "global_avg"}],
                         ids=["FC", "CNN-F", "CNN-P"])  # fmt: skip
def test_gap_row_is_left_out_only_where_the_entries_keep_one_minus_c(readout):
    """Inputs that stay far from c = 1 run without the gap row (3-6x cheaper), and that run
    equals the depth-safe one: NTK to 1e-13, 1 − c to 1e-10 relative (the bound the choice
    keeps; 4e-13 measured for FC); the note says so."""
    from dataclasses import replace

    from workbench.compile import spec_from_dict
    from workbench.theory.evaluate import input_moments, network_kernels, packed_input_gap
    from workbench.theory.kernel_program import lower, pack, run, unpack

    rng = np.random.default_rng(1)
    if readout is None:
        weight, shape, x = {"dense": {"width": 8}}, [16], rng.standard_normal((6, 16))
        layers = [weight, {"repeat": {"times": 99, "body": [{"act": "relu"}, weight]}}]
    else:
        # 8 channels: pixel vectors of 2 would come within 1e-5 of parallel (gap needed)
        weight, shape, x = (
            {"conv": {"channels": 8, "kernel": 3}},
            [8, 6],
            rng.standard_normal((4, 8, 6)),
        )
        layers = [weight, {"repeat": {"times": 19, "body": [{"act": "relu"}, weight]}},
                  {"act": "relu"}, readout, {"dense": {"width": 4}}]  # fmt: skip
    spec = spec_from_dict({"name": "r", "input": {"shape": shape}, "layers": layers,
                           "defaults": {"sigma_w2": 2.0, "sigma_b2": 0.05}})  # fmt: skip
    got = network_kernels(spec, x)
    assert any("depth-safe gap was not carried" in note for note in got.notes)
    mode = "flat" if readout is None else got.mode
    program = lower(spec, len(x), mode, "ntk", True)
    assert program.gap
    nngp, ntk, gap = run(program, pack(input_moments(x, mode)[0]), packed_input_gap(x, mode))
    assert np.abs(got.ntk / unpack(ntk, len(x), "flat") - 1).max() < 1e-13
    root = np.sqrt(np.diag(got.nngp))
    carried = unpack(gap, len(x), "flat") / root[:, None] / root[None, :]
    off = ~np.eye(len(x), dtype=bool)
    assert np.abs(got.one_minus_c[off] / carried[off] - 1).max() < 1e-10
    assert not replace(program, gap=False).gap
