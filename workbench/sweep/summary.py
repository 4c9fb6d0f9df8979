"""A finished (or partly finished) sweep directory read back for a report: its description,
how many cells are done or failed, a table of the cells and its heat map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.sweep.heatmap import DEFAULT_METRIC, metric_of
from workbench.sweep.store import SweepStore

TABLE_ROWS = 60  # a report lists at most this many cells (the heat map shows them all)


def read_sweep(directory: str | Path) -> dict[str, Any]:
    """The sweep in ``directory``: description, counts, cell rows and the heat map's path."""
    directory = Path(directory)
    try:
        description = json.loads((directory / "sweep.json").read_text())
    except (OSError, ValueError):
        raise WorkbenchError(
            f"{directory} holds no sweep (no readable sweep.json)",
            hint="give the --out directory of `workbench sweep`",
        ) from None
    task = description["task"]
    metric = DEFAULT_METRIC[task]
    records = list(SweepStore(directory).records())
    done = [r for r in records if "result" in r]
    keys = [a["key"] for a in description["axes"]]
    rows = []
    for r in sorted(done, key=lambda r: r.get("index", []))[:TABLE_ROWS]:
        row = {**{k: r["cell"].get(k) for k in keys}, metric: metric_of(r, task, metric)}
        if task == "train":
            row["diverged"] = r["result"].get("diverged_at_step") is not None
        rows.append(row)
    heatmap = directory / "heatmap.png"
    return {"description": description, "task": task, "metric": metric, "columns": [*keys, metric],
            "cells": description["cells"], "done": len(done), "failed": len(records) - len(done),
            "rows": rows, "rows_left_out": max(0, len(done) - TABLE_ROWS),
            "heatmap": heatmap if heatmap.exists() else None}  # fmt: skip
