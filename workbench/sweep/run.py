"""Plan a sweep (the grid's cells, each a validated spec and its settings) and run it on Dask:
an in-process ``LocalCluster`` by default, a scheduler address for a real cluster, or a plain
loop in this process (``sequential``). Each cell is one task; its result is written as it
finishes, so a rerun skips every finished cell."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from workbench.errors import SpecError, WorkbenchError
from workbench.sweep.grid import Axis, Cell, apply_cell, cells, check_axes, parse_axis
from workbench.sweep.store import SweepStore, cell_key
from workbench.sweep.tasks import TASKS, THEORY, pick_device, run_cell
from workbench.sweep.train import TrainSettings

FULL_VALIDATION = 2000  # larger grids validate each axis value once (a cell fails at run time)


@dataclass(frozen=True)
class Job:
    key: str
    cell: Cell
    spec_data: Any
    settings: dict


@dataclass
class SweepPlan:
    """A grid over one spec: its axes, the task every cell runs and the cells' jobs."""

    spec_file: str
    task: str
    axes: tuple[Axis, ...]
    settings: TrainSettings
    data_source: str | None
    scaling: str
    jobs: list[Job] = field(default_factory=list)

    def describe(self) -> dict:
        return {"spec": self.spec_file, "task": self.task,
                "axes": [{"key": a.key, "target": a.target, "values": list(a.values)}
                         for a in self.axes],
                "settings": self.settings.to_dict() if self.task == "train" else None,
                "data": self.data_source, "scaling": self.scaling,
                "cells": len(self.jobs)}  # fmt: skip


@dataclass
class SweepOutcome:
    """Every cell's record in grid order, and how many were computed, reused or failed."""

    plan: SweepPlan
    records: list[dict]
    computed: int
    reused: int
    failed: int
    seconds: float
    out: Path

    def to_dict(self) -> dict:
        return {**self.plan.describe(), "out": str(self.out), "computed": self.computed,
                "reused": self.reused, "failed": self.failed, "seconds": self.seconds,
                "records": self.records}  # fmt: skip


def plan_sweep(spec_file: str | Path, grids: Sequence[str], task: str = "train",
               settings: TrainSettings | None = None, data: str = "digits",
               scaling: str = "symmetric") -> SweepPlan:  # fmt: skip
    """The sweep's cells, each one's spec validated (a bad value names the cell, the file,
    line and spec path) and its settings checked, before anything runs."""
    from workbench.compile import spec_from_dict
    from workbench.compile.load import read_spec_data

    if task not in TASKS:
        raise WorkbenchError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    if not grids:
        raise WorkbenchError("a sweep needs at least one --grid", hint="e.g. --grid depth=4:64:7")
    settings = settings or TrainSettings()
    raw, lines = read_spec_data(spec_file)
    axes = tuple(parse_axis(text, raw) for text in grids)
    check_axes(axes)
    if task in THEORY and any(a.is_setting for a in axes):
        raise WorkbenchError(f"the {task} task has no training settings to sweep",
                             hint="sweep spec paths only")  # fmt: skip
    training = task == "train"
    plan = SweepPlan(str(spec_file), task, axes, settings, data if training else None,
                     scaling if training else "")  # fmt: skip
    every = math.prod(len(a.values) for a in axes) <= FULL_VALIDATION
    for cell in cells(axes):
        spec_data, values = apply_cell(raw, axes, cell)
        try:
            if every or sum(i > 0 for i in cell.index) <= 1:  # else each axis value once
                spec_from_dict(spec_data, file=str(spec_file), lines=lines)
            cell_settings = settings.with_values(values) if training else None
        except (SpecError, WorkbenchError, TypeError) as err:
            raise WorkbenchError(f"cell {cell.label()}: {err}") from None
        identity = {"task": task, "spec": spec_data}
        if training:
            identity |= {"settings": cell_settings.to_dict(), "data": data, "scaling": scaling}
        plan.jobs.append(Job(cell_key(identity), cell, spec_data,
                             cell_settings.to_dict() if training else {}))  # fmt: skip
    return plan


def run_sweep(plan: SweepPlan, out: str | Path, scheduler: str = "local", workers: int = 2,
              device: str = "auto", progress: bool = True) -> SweepOutcome:  # fmt: skip
    """Run every cell of ``plan`` not already finished in ``out``; write each as it ends."""
    from workbench.sweep.data import load_data

    start = time.perf_counter()
    store = SweepStore(out)
    data = load_data(plan.data_source, plan.scaling) if plan.task == "train" else None
    description = plan.describe() | ({"data_description": data.description} if data else {})
    store.write_description(description)
    pending = [job for job in plan.jobs if store.finished(job.key) is None]
    reused = len(plan.jobs) - len(pending)
    computed = len(pending)
    failed = 0
    bar = tqdm(total=len(plan.jobs), initial=reused, desc=f"sweep ({plan.task})", unit="cell",
               disable=not progress)  # fmt: skip
    if plan.task == "analyze":
        from workbench.sweep.theory_grid import vectorised_outcomes

        served = vectorised_outcomes(plan.axes, pending)
        for job in pending:
            if job.key in served:
                store.write(job.key, _record(plan, job, served[job.key]))
        bar.update(len(served))
        pending = [job for job in pending if job.key not in served]
    with _executor(scheduler if pending else "sequential", workers) as submit:
        for job, outcome in submit(plan.task, pending, data, device):
            failed += "error" in outcome
            store.write(job.key, _record(plan, job, outcome))
            bar.update()
            bar.set_postfix(failed=failed, reused=reused)
    bar.close()
    records = [store.record(job.key) or _unrecorded(job) for job in plan.jobs]
    return SweepOutcome(plan, records, computed, reused, failed,
                        time.perf_counter() - start, Path(out))  # fmt: skip


def _record(plan: SweepPlan, job: Job, outcome: dict) -> dict:
    return {"task": plan.task, "cell": dict(job.cell.values), "index": list(job.cell.index),
            **outcome}  # fmt: skip


def _unrecorded(job: Job) -> dict:
    return {"key": job.key, "cell": dict(job.cell.values), "error": "no result recorded"}


@contextmanager
def _executor(scheduler: str, workers: int) -> Iterator[Any]:
    """A function (task, jobs, data, device) → iterator of (job, outcome) in finishing order."""
    if scheduler == "sequential":
        yield _sequential
        return
    if workers < 1:
        raise WorkbenchError("--workers must be at least 1")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a dependency
        raise WorkbenchError(f"dask.distributed is not installed: {exc}") from None
    if scheduler == "local":
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
        except (RuntimeError, OSError) as exc:
            raise WorkbenchError(
                f"could not start a local Dask cluster: {exc}",
                hint="--scheduler sequential runs the cells here",
            ) from None
        client = Client(cluster)
    elif scheduler.startswith(("tcp://", "tls://", "ucx://")):
        cluster = None
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise WorkbenchError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                 hint="start one with `dask scheduler`, or use --scheduler "
                                 "local") from None  # fmt: skip
    else:
        raise WorkbenchError(f"unknown scheduler {scheduler!r}",
                             hint="use local, sequential or a tcp://HOST:PORT address")  # fmt: skip
    try:
        yield lambda task, jobs, data, device: _on_dask(client, task, jobs, data, device)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _sequential(task: str, jobs: Sequence[Job], data: Any, device: str) -> Iterator:
    chosen = pick_device(device, 0)
    for job in jobs:
        yield job, run_cell(task, job.spec_data, job.settings, data, chosen)


def _on_dask(client: Any, task: str, jobs: Sequence[Job], data: Any, device: str) -> Iterator:
    from dask.distributed import as_completed

    if not jobs:
        return
    shared = client.scatter(data, broadcast=True) if data is not None else None
    futures = {client.submit(_worker_cell, task, job.spec_data, job.settings, shared, device,
                             key=f"cell-{job.key}"): job for job in jobs}  # fmt: skip
    for future in as_completed(futures):
        job = futures[future]
        try:
            outcome = future.result()
        except Exception as err:  # noqa: BLE001 — a worker died under the cell, or Dask failed
            outcome = {"error": f"{type(err).__name__}: {err}"}
        yield job, outcome


def _worker_cell(task: str, spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    """Runs on a worker: its device (one GPU per worker when there are GPUs), then the cell."""
    from dask.distributed import get_worker

    name = get_worker().name
    index = name if isinstance(name, int) else None
    try:
        chosen = pick_device(device, index)
    except WorkbenchError as err:
        return {"error": f"{type(err).__name__}: {err}"}
    return {**run_cell(task, spec_data, settings, data, chosen), "worker": str(name)}
