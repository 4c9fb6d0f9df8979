"""The acceptance test of resumable sweeps: a sweep on a 2-worker LocalCluster is killed
mid-run (the client and its workers, SIGKILL), rerun, and must neither recompute a finished
cell nor differ from an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

from workbench.sweep.run import plan_sweep, run_sweep
from workbench.sweep.train import TrainSettings

GRID = ["sigma_w2=1,2", "depth=2,3,4,5"]
STEPS = 150


def _curves(records):
    return {tuple(r["cell"].values()): r["result"]["curve"] for r in records}


def test_an_interrupted_dask_sweep_resumes_without_recomputing(tanh_spec, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "workbench", "sweep", str(tanh_spec), "--out", str(out),
               "--steps", str(STEPS), "--lr", "0.05", "--workers", "2", "--json"]  # fmt: skip
    for grid in GRID:
        command += ["--grid", grid]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    cells = out / "cells"
    deadline = time.monotonic() + 180
    try:
        while len(list(cells.glob("*.json"))) < 2:
            assert run.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no cell finished in 3 minutes"
            time.sleep(0.02)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    finished = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in cells.glob("*.json")}
    assert 2 <= len(finished) < 8, f"{len(finished)} of 8 cells finished before the kill"

    plan = plan_sweep(tanh_spec, GRID, settings=TrainSettings(steps=STEPS, lr=0.05))
    resumed = run_sweep(plan, out, "local", workers=2, progress=False)
    assert (resumed.reused, resumed.computed, resumed.failed) == (
        len(finished),
        8 - len(finished),
        0,
    )
    for name, (mtime, text) in finished.items():
        path = cells / name
        assert path.stat().st_mtime_ns == mtime and path.read_text() == text
    assert {r.get("worker") for r in resumed.records} >= {"0", "1"}  # both workers took cells

    reference = run_sweep(plan, tmp_path / "reference", "sequential", progress=False)
    assert _curves(resumed.records) == _curves(reference.records)
    assert json.loads((out / "sweep.json").read_text())["cells"] == 8
