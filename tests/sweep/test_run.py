import json

import numpy as np
import pytest

from workbench.analysis import analyze_spec
from workbench.cli import main
from workbench.compile import load_spec, spec_from_dict
from workbench.compile.load import read_spec_data
from workbench.errors import WorkbenchError
from workbench.sweep.run import plan_sweep, run_sweep
from workbench.sweep.train import TrainSettings

FAST = TrainSettings(steps=20, lr=0.05, batch_size=32)


def _finals(outcome):
    return {tuple(r["cell"].values()): r["result"]["final"] for r in outcome.records}


def test_a_rerun_reuses_finished_cells_and_an_overlapping_grid_reuses_its_share(
    tanh_spec, tmp_path
):
    out = tmp_path / "out"
    first = run_sweep(plan_sweep(tanh_spec, ["sigma_w2=1,2"], settings=FAST), out, "sequential",
                      progress=False)  # fmt: skip
    assert (first.computed, first.reused, first.failed) == (2, 0, 0)
    again = run_sweep(plan_sweep(tanh_spec, ["sigma_w2=1,2,3"], settings=FAST), out,
                      "sequential", progress=False)  # fmt: skip
    assert (again.computed, again.reused) == (1, 2)
    assert {k: v for k, v in _finals(again).items() if k != (3.0,)} == _finals(first)
    other = run_sweep(plan_sweep(tanh_spec, ["sigma_w2=1,2"], settings=TrainSettings(steps=21)),
                      out, "sequential", progress=False)  # fmt: skip
    assert other.computed == 2  # other settings: other cells, never a stale result


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tanh_spec, tmp_path, capsys):
    code = main(["sweep", str(tanh_spec), "--grid", "layers[1].dense.width=10,7", "--steps", "5",
                 "--scheduler", "sequential", "--out", str(tmp_path / "o")])  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        code == 1
        and "1 failed" in printed
        and "end the spec with a dense layer of width 10" in printed
    )
    records = [json.loads(p.read_text()) for p in (tmp_path / "o" / "cells").glob("*.json")]
    assert sorted("error" in r for r in records) == [False, True]
    assert (tmp_path / "o" / "summary.csv").read_text().count("\n") == 3


def test_bad_cells_are_refused_before_anything_runs(tanh_spec, tmp_path):
    with pytest.raises(WorkbenchError, match=r"cell sigma_w2=-1.*sigma_w2"):
        plan_sweep(tanh_spec, ["sigma_w2=1,-1"])
    with pytest.raises(WorkbenchError, match="learning rate"):
        plan_sweep(tanh_spec, ["lr=0.1,-0.1"])
    with pytest.raises(WorkbenchError, match="no training settings"):
        plan_sweep(tanh_spec, ["lr=0.1"], task="analyze")
    with pytest.raises(WorkbenchError, match="unknown scheduler"):
        run_sweep(plan_sweep(tanh_spec, ["sigma_w2=1"], settings=FAST), tmp_path, "ftp://x",
                  progress=False)  # fmt: skip


def test_the_theory_task_gives_analyze_numbers_and_a_heat_map(tanh_spec, tmp_path, capsys):
    code = main(["sweep", str(tanh_spec), "--task", "analyze", "--grid", "sigma_w2=0.8:2.4:3",
                 "--grid", "depth=2,8", "--scheduler", "sequential", "--json",
                 "--out", str(tmp_path / "t")])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["computed"] == 6
    for record in result["records"]:
        spec_text = tanh_spec.read_text().replace(
            "sigma_w2: 1.5", f"sigma_w2: {record['cell']['sigma_w2']}"
        )
        path = tmp_path / "cell.yaml"
        path.write_text(spec_text)
        expected = analyze_spec(load_spec(path)).to_dict()["blocks"][0]
        assert record["result"]["blocks"][0]["xi_c"] == pytest.approx(expected["xi_c"], rel=1e-12)
    assert (tmp_path / "t" / "heatmap.png").stat().st_size > 10_000


BN_SPEC = """\
name: bn-small
input: {shape: [64]}
defaults: {sigma_w2: 2.0, sigma_b2: 0.5}
layers:
  - dense: {width: 16}
  - bn: {gamma: 1.0}
  - act: relu
  - dense: {width: 10}
"""


def test_a_gamma_by_learning_rate_map_draws_eta_max(tmp_path, monkeypatch):
    from workbench.compile.load import read_spec_data
    from workbench.sweep import overlay
    from workbench.sweep.data import load_data
    from workbench.sweep.overlay import learning_rate_bounds, overlay_axes

    spec = tmp_path / "bn.yaml"
    spec.write_text(BN_SPEC)
    settings = TrainSettings(steps=5, batch_size=16, momentum=0.9, loss="mse")
    plan = plan_sweep(spec, ["gamma=0.5,2", "lr=1e-3:1:2:log"], settings=settings)
    x, y = overlay_axes(plan.axes)
    assert (x.key, y.key) == ("gamma", "lr")
    raw, _ = read_spec_data(spec)
    curves = learning_rate_bounds(raw, x, plan.settings, load_data("digits"), points=3)
    eta = curves.curves[r"$\eta_{max}$"]
    assert np.all(np.isfinite(eta)) and np.all(np.diff(eta) < 0)  # λ_max grows with γ (Fig. 1)
    assert np.allclose(curves.curves[r"$\eta_{max}/2$"], eta / 2)
    monkeypatch.setattr(overlay, "GAMMA_POINTS", 2)
    code = main(["sweep", str(spec), "--grid", "gamma=0.5,2", "--grid", "lr=1e-3:1:2:log",
                 "--steps", "5", "--batch-size", "16", "--loss", "mse", "--metric", "train_loss",
                 "--scheduler", "sequential", "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 0 and (tmp_path / "o" / "heatmap.png").exists()


def test_a_sigma_grid_of_a_one_step_block_is_analysed_at_once(tmp_path):
    out = tmp_path / "grid"
    plan = plan_sweep("derivations/erf-fc-critical.yaml", ["sigma_w2=0.5:4:10", "sigma_b2=0:0.3:6"],
                      task="analyze")  # fmt: skip
    found = run_sweep(plan, out, "sequential", progress=False)
    assert found.computed == 60 and found.failed == 0
    vectorised = [r for r in found.records if "computed_by" in r["result"]]
    assert len(vectorised) >= 54  # the sigma_b2 = 0, sigma_w2 <= 1 cells go cell by cell
    raw, _ = read_spec_data("derivations/erf-fc-critical.yaml")
    for record in vectorised[::13]:
        data = dict(raw, defaults=dict(record["cell"]))
        (expected,) = analyze_spec(spec_from_dict(data)).to_dict()["blocks"]
        (block,) = record["result"]["blocks"]
        assert block["phase"] == expected["phase"]
        for key in ("q_star", "c_star", "chi_1", "xi_c"):
            if expected[key] is not None:
                assert block[key] == pytest.approx(expected[key], rel=1e-9), key


def test_a_report_shows_a_sweep(tanh_spec, tmp_path):
    from workbench.report import write_report
    from workbench.sweep.outputs import write_outputs

    sweep = tmp_path / "sweep"
    plan = plan_sweep(tanh_spec, ["sigma_w2=1,2", "depth=2,3"], settings=FAST)
    write_outputs(run_sweep(plan, sweep, "sequential", progress=False))
    files = write_report(tanh_spec, tmp_path / "report", ("md",), sweep=sweep)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Sweep over the grid" in text and "4 of 4 cells finished" in text
    assert "![sweep](sweep.png)" in text and (tmp_path / "report" / "sweep.png").exists()
    assert any(f.name == "sweep.png" for f in files.files)
    with pytest.raises(WorkbenchError, match="holds no sweep"):
        write_report(tanh_spec, tmp_path / "r2", ("md",), sweep=tmp_path)


@pytest.mark.parametrize("task, metric", [("fisher", "eta_max"), ("ntk-spectrum", "kappa"),
                                          ("kernel", "nngp_correlation_mean")])  # fmt: skip
def test_theory_tasks_give_their_commands_numbers(tanh_spec, tmp_path, task, metric):
    from workbench.sweep.heatmap import metric_of
    from workbench.sweep.tasks import run_cell

    plan = plan_sweep(tanh_spec, ["sigma_w2=1,2.5"], task=task)
    found = run_sweep(plan, tmp_path, "sequential", progress=False)
    assert found.failed == 0
    values = [metric_of(r, task, metric) for r in found.records]
    assert all(np.isfinite(values)) and values[0] != values[1]
    again = run_cell(task, plan.jobs[1].spec_data, {}, None, "cpu")["result"]
    assert metric_of({"result": again}, task, metric) == values[1]
