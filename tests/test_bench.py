"""The benchmark command runs and reports what it promises (times are printed, not asserted:
speed is judged from the printed ratios, never by timed unit tests)."""

from __future__ import annotations

import json

from benchmarks.bench import main


def test_critical_benchmark_reports_every_target(capsys):
    assert main(["critical", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3
    for result in results:
        timing = result.get("seconds", result.get("seconds_per_point"))
        baseline = result.get("baseline_seconds", result.get("baseline_seconds_per_point"))
        assert timing > 0 and baseline > 0
    # the 10,000-layer evolution at criticality: correlations creep towards 1 like 1 - O(1/l)
    assert 0.99 < results[2]["final_mean_correlation"] < 1


def test_simulator_benchmark_runs_small():
    from benchmarks.bench import bench_simulator_build, bench_simulator_forward

    forward = bench_simulator_forward(width=64, depth=3, ensemble=2, batch=8, repeats=1)
    build = bench_simulator_build(width=32, depth=20)
    for result in (forward, build):
        assert result["seconds"] > 0 and result["baseline_seconds"] > 0
        assert result["throughput_ratio"] > 0


def test_kernel_benchmark_runs_without_neural_tangents():
    from benchmarks.bench import bench_kernels

    rows = bench_kernels(compare_python=None, repeats=1, compiled=())
    names = [r["name"].split()[1] for r in rows]
    assert names == ["fc_erf", "fc_relu", "fc_tanh", "fc_erf_shape", "cnn_p", "cnn_f"]
    assert all(r["seconds"] > 0 and r["reference"] for r in rows)
    tanh = rows[2]
    assert tanh["ours_error"] < 1e-12  # Mehler's expansion against per-entry quadrature


def test_depth_benchmark_runs_small():
    from benchmarks.bench import _deep_specs, bench_depth

    (row,) = bench_depth(depth=50, direct_depth=2, names=("flagship",))
    assert row["name"].startswith("flagship") and "50 layers" in row["name"]
    assert row["seconds"] > 0 and row["baseline_seconds"] > 0
    cnn = _deep_specs(50)["cnn_p_tanh"]
    assert cnn.layers[1].times == 49  # 50 convs, pooled: pixel-pair kernels


def test_depth_safe_benchmark_runs_small():
    from benchmarks.bench import bench_depth_safe

    rows = bench_depth_safe(inputs=8, depth=5, repeats=1)
    assert [row["name"].split(",")[0].split()[2] for row in rows] == ["FC", "CNN-P", "CNN-F"]
    assert all(row["ratio"] > 0 and "relu" in row["name"] for row in rows)
    from benchmarks.bench import _line

    assert all("the gap row forced" in _line(row) for row in rows)  # the printed line


def test_sweep_benchmark_runs_small():
    from benchmarks.bench import bench_sweep

    result = bench_sweep(cells=4, steps=5)
    assert result["seconds"] > 0 and result["baseline_seconds"] > 0
    assert result["cells_per_second"] > 0 and result["throughput_ratio"] > 0
