"""Benchmarks: ``python -m benchmarks.bench critical|simulator|kernels|depth [--json]``.

Each line prints a time, its target, and a baseline timed in the same run (these machines are
noisy, so ratios against same-run baselines are what to compare between runs):

* 200 points of tanh's critical line in float64 (target ≤ 1 s); baseline: the same points
  solved one call at a time.
* seconds per critical point at 30 significant digits (target ≤ 0.5 s).
* a 10,000-layer qˡ/cˡ evolution of 32 inputs through tanh (a quadrature activation) at its
  critical point, inputs normalised so that q⁰ = q* as in the mean-field literature (target
  ≤ 2 s); baseline: direct integration of every pair, timed over a few layers and scaled to
  10,000.
* simulator: forward throughput of an ensemble of deep tanh networks against plain torch
  matmuls of the same shapes (target ≥ 50%), and the build time of a 1,000-layer network
  against sampling its weights with torch.randn.
* kernels: NNGP + NTK of FC (depth 100, 256 inputs, erf, relu and tanh) and 1D CNN-P / CNN-F
  (n = 16, 16 inputs, depth 20) against neural-tangents' jitted kernels on the same CPU
  (target ratio ≤ 0.5, compile excluded on both sides; tanh against ElementwiseNumerical with
  deg = 25, both sides' errors measured): our default (eager) time and, for the CNNs, the
  time with ``compiled=True`` (torch.compile) and its one-off compile.
* depth: the flagship's kernels (10,002 layers, target ≤ 2 s) and a 10,000-layer tanh CNN-P
  with full pixel-pair kernels (target ≤ 60 s); baseline: per-entry quadrature at every
  layer, timed on 20 layers and extrapolated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.activations import parse_activation
from workbench.precision import F64, Mp
from workbench.theory.critical import critical_line, critical_point
from workbench.theory.evolution import _direct_step, evolve_kernel, input_kernel
from workbench.theory.fc_maps import single_step

TANH_SIGMA_B2 = 0.05


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def bench_critical_line(points: int = 200) -> dict:
    phi = parse_activation("tanh")
    grid = np.linspace(0.005, 1.0, points)
    critical_line(phi, grid[:2])  # warm the activation's compiled forms
    seconds, line = _timed(lambda: critical_line(phi, grid))
    subset = grid[:: max(points // 20, 1)]
    loop_seconds, loop = _timed(lambda: [critical_point(phi, v) for v in subset])
    for fast, slow in zip(line[:: max(points // 20, 1)], loop):
        agree = abs(fast.sigma_w2 - slow.sigma_w2) <= 1e-13 * slow.sigma_w2
        assert agree, "vectorised and one-at-a-time solves disagree"
    baseline = loop_seconds * points / len(subset)
    return {
        "name": f"critical line, {points} points, float64 (tanh)",
        "seconds": seconds,
        "target_seconds": 1.0,
        "baseline": "one critical_point call per point",
        "baseline_seconds": baseline,
        "speedup": baseline / seconds,
    }


def bench_critical_digits(digits: int = 30, points: int = 4) -> dict:
    phi = parse_activation("tanh")
    grid = np.linspace(0.02, 0.5, points)
    ctx = Mp(digits)
    f64_seconds, _ = _timed(lambda: critical_line(phi, grid))
    seconds, line = _timed(lambda: critical_line(phi, grid, ctx))
    for point in line:
        assert len(ctx.to_json(point.sigma_w2).replace(".", "").lstrip("0")) >= digits - 1
    return {
        "name": f"critical point at {digits} digits (tanh)",
        "seconds_per_point": seconds / points,
        "target_seconds_per_point": 0.5,
        "baseline": "float64 seconds per point",
        "baseline_seconds_per_point": f64_seconds / points,
        "ratio": seconds / f64_seconds,
    }


def bench_evolution(depth: int = 10_000, inputs: int = 32, direct_layers: int = 3) -> dict:
    phi = parse_activation("tanh")
    point = critical_point(phi, TANH_SIGMA_B2)
    sigma_w2, q_star = float(point.sigma_w2), float(point.q_star)
    steps = single_step(phi, sigma_w2, TANH_SIGMA_B2)
    dim = 784
    x = np.random.default_rng(0).standard_normal((inputs, dim))
    x *= np.sqrt((q_star - TANH_SIGMA_B2) / sigma_w2 * dim) / np.linalg.norm(
        x, axis=1, keepdims=True
    )
    kernel = input_kernel(x, sigma_w2, TANH_SIGMA_B2)
    seconds, evolution = _timed(lambda: evolve_kernel(steps, kernel, depth))

    def direct() -> None:
        q, s = evolution.q[0], evolution.one_minus_c[0]
        for _ in range(direct_layers):
            q, s, _ = _direct_step(steps[0], q, evolution.pairs, s, F64)

    direct_seconds, _ = _timed(direct)
    baseline = direct_seconds / direct_layers * depth
    return {
        "name": f"{depth}-layer q/c evolution, {inputs} inputs, tanh at criticality (q0 = q*)",
        "seconds": seconds,
        "target_seconds": 2.0,
        "baseline": "direct integration of every pair at every layer (extrapolated)",
        "baseline_seconds": baseline,
        "speedup": baseline / seconds,
        "final_mean_correlation": float(evolution.c[-1].mean()),
    }


def _fc_spec(width: int, depth: int, act: str = "tanh", sigma_w2: float = 1.76):
    from workbench.compile import spec_from_dict

    body = [{"dense": {"width": width}}, {"act": act}]
    return spec_from_dict(
        {
            "name": "bench-fc",
            "input": {"shape": [width]},
            "defaults": {"sigma_w2": sigma_w2, "sigma_b2": 0.05},
            "layers": [{"repeat": {"times": depth, "body": body}}],
        }
    )


def _best_of(work: Callable[[], Any], repeats: int) -> float:
    work()  # warm-up
    return min(_timed(work)[0] for _ in range(repeats))


def bench_simulator_forward(width=1024, depth=20, ensemble=8, batch=256, repeats=5) -> dict:
    """Forward passes of the simulator against the same matmuls and tanh in plain torch."""
    import torch

    from workbench.sim.network import build_network

    net = build_network(_fc_spec(width, depth), ensemble=ensemble, dtype="float32", device="cpu")
    x = torch.randn(ensemble, batch, width)
    weights = [layer.weight.detach() for layer in net.modules() if hasattr(layer, "ntk_scale")]
    biases = [layer.bias.detach() for layer in net.modules() if hasattr(layer, "ntk_scale")]

    def plain() -> None:
        h = x
        for w, b in zip(weights, biases):
            h = torch.tanh(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))

    with torch.no_grad():
        sim = _best_of(lambda: net(x), repeats)
        base = _best_of(plain, repeats)
    flops = 2 * ensemble * batch * width * width * depth
    return {
        "name": f"simulator forward, {ensemble} x {depth}-layer tanh nets of width {width}, "
        f"batch {batch}, float32",
        "seconds": sim,
        "gflops": flops / sim / 1e9,
        "baseline": "plain torch baddbmm + tanh, same shapes",
        "baseline_seconds": base,
        "throughput_ratio": base / sim,
        "target_ratio": 0.5,
    }


def bench_simulator_build(width=512, depth=1000) -> dict:
    """Building a 1,000-layer network against sampling the same weights with torch.randn."""
    import torch

    from workbench.sim.network import build_network

    seconds, _ = _timed(
        lambda: build_network(_fc_spec(width, depth), dtype="float32", device="cpu")
    )
    base, _ = _timed(lambda: [torch.randn(width, width) for _ in range(depth)])
    return {
        "name": f"build a {depth}-layer width-{width} network (float32)",
        "seconds": seconds,
        "baseline": "torch.randn of the same weights",
        "baseline_seconds": base,
        "throughput_ratio": base / seconds,
        "target_ratio": 0.5,
    }


KERNEL_SIGMAS = (1.5, 0.05)


def _kernel_specs(fc_depth: int = 100, cnn_depth: int = 20) -> dict:
    from workbench.compile import spec_from_dict

    sw2, sb2 = KERNEL_SIGMAS
    defaults = {"sigma_w2": sw2, "sigma_b2": sb2}

    def fc(act: str):
        body = [{"act": act}, {"dense": {"width": 512}}]
        layers = [{"dense": {"width": 512}}, {"repeat": {"times": fc_depth - 1, "body": body}}]
        return spec_from_dict({"name": f"fc-{act}", "input": {"shape": [32]},
                               "defaults": defaults, "layers": layers})  # fmt: skip

    def cnn(readout: object):
        conv = {"conv": {"channels": 64, "kernel": 3}}
        layers = [conv, {"repeat": {"times": cnn_depth - 1, "body": [{"act": "relu"}, conv]}},
                  {"act": "relu"}, readout, {"dense": {"width": 1}}]  # fmt: skip
        return spec_from_dict({"name": "cnn", "input": {"shape": [3, 16]},
                               "defaults": defaults, "layers": layers})  # fmt: skip

    body = [{"dense": {"width": 512}}, {"act": "erf"}]
    shape_changing = spec_from_dict(
        {"name": "fc-erf-shape", "input": {"shape": [10]}, "defaults": defaults,
         "layers": [{"repeat": {"times": 100, "body": body}}]}
    )  # fmt: skip
    return {
        "fc_erf": fc("erf"),
        "fc_relu": fc("relu"),
        "fc_tanh": fc("tanh"),
        "fc_erf_shape": shape_changing,
        "cnn_p": cnn({"pool": "global_avg"}),
        "cnn_f": cnn("flatten"),
    }


def bench_kernels(
    compare_python: str | None = None,
    repeats: int = 3,
    compiled: tuple[str, ...] = ("cnn_p", "cnn_f"),
) -> list[dict]:
    """NNGP+NTK of FC (depth 100, 256 inputs, erf, relu and tanh) and 1D CNN-P/CNN-F (n = 16,
    16 inputs, depth 20), beside neural-tangents' jitted kernels (float64, compile excluded;
    analytic for erf/relu, ``ElementwiseNumerical(tanh, deg=25)`` for tanh) when an
    interpreter with neural-tangents is given or importable; both sides timed per call as the
    median of ``repeats`` rounds of back-to-back calls. The networks named in ``compiled`` are
    also timed with ``compiled=True`` (after one compiling call). For tanh both sides' errors
    are measured against an independent route on the first 8 inputs: the engine's per-entry
    two-dimensional quadrature (Mehler's expansion switched off)."""
    import importlib.util
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from workbench.theory.evaluate import network_kernels

    rng = np.random.default_rng(0)
    inputs = {"fc": rng.standard_normal((256, 32)), "cnn": rng.standard_normal((16, 3, 16))}
    inputs["shape"] = rng.standard_normal((64, 10))
    ours, kernels, fused = {}, {}, {}
    for name, spec in _kernel_specs().items():
        x = inputs["shape" if name.endswith("shape") else name.split("_")[0]]
        network_kernels(spec, x[:4])  # warm the activation's compiled forms
        ours[name], kernels[name] = _median_time(lambda s=spec, x=x: network_kernels(s, x), repeats)
        if name in compiled:
            start = time.perf_counter()
            first = network_kernels(spec, x, compiled=True)
            compile_seconds = time.perf_counter() - start
            seconds, _ = _median_time(
                lambda s=spec, x=x: network_kernels(s, x, compiled=True), repeats
            )
            fused[name] = {"compiled_seconds": seconds, "compile_seconds": compile_seconds,
                           "compile_notes": first.notes}  # fmt: skip
    python = compare_python
    if python is None and importlib.util.find_spec("neural_tangents") is not None:
        python = sys.executable
    reference: dict = {}
    agreement: dict = {}
    saved_nt: dict = {}
    note = "neural-tangents not available: pass --compare-python PATH to an interpreter with it"
    if python:
        with tempfile.TemporaryDirectory() as tmp:
            data, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(data, fc_x=inputs["fc"], cnn_x=inputs["cnn"], shape_x=inputs["shape"],
                     sigma_w2=KERNEL_SIGMAS[0],
                     sigma_b2=KERNEL_SIGMAS[1], fc_depth=100, cnn_depth=20)  # fmt: skip
            script = Path(__file__).with_name("nt_reference.py")
            proc = subprocess.run([python, str(script), str(data), str(out)], capture_output=True,
                                  text=True, timeout=1200)  # fmt: skip
            if proc.returncode == 0:
                reference = json.loads(proc.stdout.strip().splitlines()[-1])
                saved = np.load(out)
                saved_nt = {key: saved[key] for key in saved.files}
                for name, result in kernels.items():
                    diffs = []
                    for kind in ("nngp", "ntk"):
                        ref = saved[f"{name}_{kind}"].reshape(getattr(result, kind).shape)
                        diffs.append(np.abs(getattr(result, kind) - ref).max() / np.abs(ref).max())
                    agreement[name] = float(max(diffs))
                note = f"neural-tangents via {python}"
            else:
                note = f"neural-tangents run failed: {proc.stderr.strip().splitlines()[-1:]}"
    accuracy = _tanh_accuracy(_kernel_specs()["fc_tanh"], inputs["fc"][:8], kernels, saved_nt)
    rows = []
    for name, seconds in ours.items():
        row = {"name": f"kernels {name} (NNGP + NTK)", "seconds": seconds, "reference": note}
        row.update(fused.get(name, {}))
        if name == "fc_tanh":
            row.update(accuracy)
        if name in reference:
            row.update(
                neural_tangents_seconds=reference[name],
                ratio=seconds / reference[name],
                target_ratio=0.5,
                max_relative_difference=agreement.get(name),
            )
            if name in fused:
                row["compiled_ratio"] = fused[name]["compiled_seconds"] / reference[name]
        rows.append(row)
    return rows


def _tanh_accuracy(spec: Any, x: np.ndarray, ours: dict, nt: dict) -> dict:
    """Largest relative errors of our tanh kernels (and neural-tangents', when run) on the
    inputs ``x`` (the first rows of the benchmark's), against per-entry quadrature."""
    from unittest import mock

    from workbench.theory.evaluate import network_kernels

    with mock.patch("workbench.gaussian.mehler.dual_matrices", return_value=None):
        ref = network_kernels(spec, x)
    m = len(x)
    out: dict = {"accuracy_reference": f"per-entry quadrature, first {m} inputs"}
    for who, get in (("ours", lambda k: getattr(ours["fc_tanh"], k)),
                     ("neural_tangents", lambda k: nt.get(f"fc_tanh_{k}"))):  # fmt: skip
        errors = []
        for kind in ("nngp", "ntk"):
            value = get(kind)
            if value is None:
                break
            r = getattr(ref, kind)
            errors.append(float(np.abs(value[:m, :m] - r).max() / np.abs(r).max()))
        if errors:
            out[f"{who}_error"] = max(errors)
    return out


def _deep_specs(depth: int) -> dict:
    """The flagship FC spec at ``depth`` repeats, and a 1D tanh CNN-P of ``depth`` convs
    (xiao2018's setting: n = 16 pixels, circular 3-tap convs, global average pool), both at
    tanh's critical point for σ_b² = 0.05."""
    from workbench.compile import load_spec, spec_from_dict

    flagship = load_spec(Path(__file__).parents[1] / "derivations" / "tanh-fc-critical.yaml")
    repeat = next(i for i, layer in enumerate(flagship.layers) if hasattr(layer, "times"))
    flagship = dataclasses.replace(
        flagship,
        layers=(*flagship.layers[:repeat],
                dataclasses.replace(flagship.layers[repeat], times=depth),
                *flagship.layers[repeat + 1 :]),
    )  # fmt: skip
    conv = {"conv": {"channels": 64, "kernel": 3}}
    cnn = spec_from_dict(
        {"name": "cnn-p-tanh", "input": {"shape": [3, 16]},
         "defaults": {"sigma_w2": 1.76, "sigma_b2": 0.05},
         "layers": [conv, {"repeat": {"times": depth - 1, "body": [{"act": "tanh"}, conv]}},
                    {"act": "tanh"}, {"pool": "global_avg"}, {"dense": {"width": 1}}]}
    )  # fmt: skip
    return {"flagship": flagship, "cnn_p_tanh": cnn}


def bench_depth(
    depth: int = 10_000, direct_depth: int = 20, names: tuple[str, ...] = ("flagship", "cnn_p_tanh")
) -> list[dict]:
    """NNGP+NTK of 4 inputs through the flagship (10,002 layers; target ≤ 2 s) and through a
    10,000-layer tanh CNN-P with full pixel-pair kernels (target ≤ 60 s), each beside the
    general engine without its fast paths (per-entry quadrature at every layer: no Mehler
    expansion, no settled-variance interpolants) timed on ``direct_depth`` layers and
    extrapolated. ``names``: which of the two to run."""
    from unittest import mock

    from workbench.theory.evaluate import network_kernels

    rng = np.random.default_rng(0)
    inputs = {
        "flagship": rng.standard_normal((4, 784)),
        "cnn_p_tanh": rng.standard_normal((4, 3, 16)),
    }
    targets = {"flagship": 2.0, "cnn_p_tanh": 60.0}
    shallow = _deep_specs(direct_depth)
    rows = []
    for name, spec in _deep_specs(depth).items():
        if name not in names:
            continue
        seconds, result = _timed(lambda s=spec, x=inputs[name]: network_kernels(s, x))
        with mock.patch("workbench.gaussian.mehler.dual_matrices", return_value=None), \
                mock.patch("workbench.theory.evaluate.Evaluator.interpolants_at",
                           return_value=None):  # fmt: skip
            direct, _ = _timed(lambda s=shallow[name], x=inputs[name]: network_kernels(s, x))
        baseline = direct / direct_depth * depth
        rows.append({
            "name": f"{name} kernels, {depth} layers, 4 inputs (NNGP + NTK, {result.mode})",
            "seconds": seconds, "target_seconds": targets[name],
            "baseline": f"per-entry quadrature at every layer ({direct_depth} layers, "
                        "extrapolated)",
            "baseline_seconds": baseline, "speedup": baseline / seconds,
        })  # fmt: skip
    return rows


def bench_depth_safe(inputs: int = 256, depth: int = 100, repeats: int = 7) -> list[dict]:
    """The cost of the depth-safe state (the gap G = √(K_aa K_bb) − K_ab, 1 − c without
    cancellation) in the fused programs: NNGP + NTK of ``inputs`` random inputs through a
    ``depth``-layer relu FC net at σ_w² = 2, and of 16 through the 20-layer relu CNN-P and
    CNN-F of ``bench_kernels``, by the default path (``depth_safe_run``: the gap row only
    where some pair comes near c = 1) against the same program without the gap row, same
    run; ``forced_gap_seconds`` times the program that always carries it (nearly parallel
    inputs, or deep at the edge of chaos)."""
    from dataclasses import replace
    from functools import partial

    from workbench.theory.evaluate import depth_safe_run, input_moments, packed_input_gap
    from workbench.theory.kernel_program import lower, pack, run

    rng = np.random.default_rng(0)
    specs = _kernel_specs()
    cases = [
        (f"depth-safe fused FC program, relu, {depth} layers, {inputs} inputs",
         _fc_spec(64, depth, act="relu", sigma_w2=2.0), rng.standard_normal((inputs, 64)),
         "flat"),
        ("depth-safe fused CNN-P program (pixel pairs), relu, 20 layers, 16 inputs",
         specs["cnn_p"], rng.standard_normal((16, 3, 16)), "full"),
        ("depth-safe fused CNN-F program (same pixel), relu, 20 layers, 16 inputs",
         specs["cnn_f"], rng.standard_normal((16, 3, 16)), "diagonal"),
    ]  # fmt: skip
    out = []
    for name, spec, x, mode in cases:
        program = lower(spec, len(x), mode, "ntk", True)
        plain = replace(program, gap=False)
        first = pack(input_moments(x, mode)[0])
        gap0 = packed_input_gap(x, mode)
        notes: list[str] = []
        make_gap = partial(packed_input_gap, x, mode)
        seconds, _ = _median_time(partial(depth_safe_run, program, first, make_gap, notes),
                                  repeats)  # fmt: skip
        forced, _ = _median_time(partial(run, program, first, gap0), repeats)
        without, _ = _median_time(partial(run, plain, first), repeats)
        out.append({
            "name": name, "seconds": seconds, "target_ratio": 1.3,
            "baseline": "the same program without the gap row",
            "baseline_seconds": without, "ratio": seconds / without,
            "carried": not any("not carried" in note for note in notes),
            "forced_gap_seconds": forced, "forced_ratio": forced / without,
        })  # fmt: skip
    return out


ROUND_SECONDS = 0.1  # a timing round repeats a sub-millisecond call until it lasts this long


def _median_time(work: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Seconds per call: the median over ``repeats`` rounds of back-to-back calls (as many as
    fill ROUND_SECONDS, at least one), the protocol ``nt_reference`` uses too."""
    seconds, result = _timed(work)
    calls = max(1, int(ROUND_SECONDS / max(seconds, 1e-9)))
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            result = work()
        rounds.append((time.perf_counter() - start) / calls)
    return sorted(rounds)[repeats // 2], result


def bench_sweep(cells: int = 12, steps: int = 600, workers: int = 2) -> dict:
    """A training sweep of ``cells`` cells (tanh digits nets) on a ``workers``-worker Dask
    LocalCluster, cluster start-up included, against a plain loop over the same cells."""
    import tempfile

    from workbench.sweep.data import load_data
    from workbench.sweep.run import plan_sweep, run_sweep
    from workbench.sweep.tasks import run_cell
    from workbench.sweep.train import TrainSettings

    spec = Path(__file__).resolve().parent.parent / "derivations" / "tanh-fc-trainability.yaml"
    grid = [f"sigma_w2=0.5:4:{cells // 2}", "depth=4,16"]
    plan = plan_sweep(spec, grid, settings=TrainSettings(steps=steps, lr=0.002, momentum=0.9))
    data = load_data("digits")
    start = time.perf_counter()
    for job in plan.jobs:
        run_cell("train", job.spec_data, job.settings, data, "cpu")
    loop = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = run_sweep(plan, out, "local", workers, "cpu", progress=False)
        cluster = time.perf_counter() - start
    if outcome.failed:
        raise RuntimeError(f"{outcome.failed} cells of the benchmark sweep failed")
    n = len(plan.jobs)
    return {"name": f"sweep: {n} cells of {steps} steps on a {workers}-worker LocalCluster",
            "seconds": cluster, "cells_per_second": n / cluster,
            "baseline": "the same cells in a plain loop", "baseline_seconds": loop,
            "baseline_cells_per_second": n / loop, "throughput_ratio": loop / cluster,
            "target_ratio": 1.5}  # fmt: skip


SUITES = {
    "critical": (bench_critical_line, bench_critical_digits, bench_evolution),
    "simulator": (bench_simulator_forward, bench_simulator_build),
    "kernels": (bench_kernels,),
    "depth": (bench_depth, bench_depth_safe),
    "sweep": (bench_sweep,),
}


def _line(result: dict) -> str:
    if "reference" in result:
        text = f"{result['name']}: {_ms(result['seconds'])}"
        if "ratio" in result:
            text += (
                f"; neural-tangents {_ms(result['neural_tangents_seconds'])}; ratio "
                f"{result['ratio']:.2f} (target ≤ {result['target_ratio']}); max relative "
                f"difference {result['max_relative_difference']:.1e}"
            )
        if "ours_error" in result:
            text += f"; error vs {result['accuracy_reference']}: ours {result['ours_error']:.1e}"
            if "neural_tangents_error" in result:
                text += f", neural-tangents {result['neural_tangents_error']:.1e}"
        if "compiled_seconds" in result:
            text += f"; compiled {_ms(result['compiled_seconds'])}"
            if "compiled_ratio" in result:
                text += f" (ratio {result['compiled_ratio']:.2f})"
            text += f", compiling took {result['compile_seconds']:.0f} s"
            text += "".join(f" ({note})" for note in result["compile_notes"])
        return text + f" [{result['reference']}]"
    if "forced_ratio" in result:
        return (
            f"{result['name']}: {_ms(result['seconds'])} "
            f"({'gap row carried' if result['carried'] else 'gap row left out'}); "
            f"{result['baseline']}: {_ms(result['baseline_seconds'])}, ratio "
            f"{result['ratio']:.2f} (target ≤ {result['target_ratio']}); the gap row forced: "
            f"{_ms(result['forced_gap_seconds'])}, ratio {result['forced_ratio']:.1f}"
        )
    if "throughput_ratio" in result:
        main = f"{result['seconds']:.3f} s"
        base = (
            f"{result['baseline']}: {result['baseline_seconds']:.3f} s; throughput ratio "
            f"{result['throughput_ratio']:.2f} (target ≥ {result['target_ratio']})"
        )
    elif "seconds" in result:
        main = f"{result['seconds']:.3f} s (target ≤ {result['target_seconds']} s)"
        base = f"{result['baseline']}: {result['baseline_seconds']:.2f} s, x{result['speedup']:.0f}"
    else:
        main = (
            f"{result['seconds_per_point']:.3f} s/point "
            f"(target ≤ {result['target_seconds_per_point']} s)"
        )
        base = (
            f"{result['baseline']}: {result['baseline_seconds_per_point']:.4f} s, "
            f"ratio {result['ratio']:.0f}"
        )
    return f"{result['name']}: {main}; {base}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--compare-python", help="kernels: an interpreter with neural-tangents for the baseline"
    )
    args = parser.parse_args(argv)
    results = []
    for bench in SUITES[args.suite]:
        out = bench(args.compare_python) if bench is bench_kernels else bench()
        for result in out if isinstance(out, list) else [out]:
            results.append(result)
            if not args.json:
                print(_line(result), flush=True)
    if args.json:
        print(json.dumps({"suite": args.suite, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
