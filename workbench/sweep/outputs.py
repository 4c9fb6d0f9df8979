"""What a finished sweep leaves beside its cells: ``summary.csv`` (one row per cell) and, for
two or more axes, ``heatmap.png`` with the theory's depth scales where the axes allow."""

from __future__ import annotations

import csv
from pathlib import Path

from workbench.sweep.data import load_data
from workbench.sweep.heatmap import DEFAULT_METRIC, summary_rows, write_heatmap
from workbench.sweep.overlay import overlay_axes, theory_curves
from workbench.sweep.run import SweepOutcome


def write_outputs(outcome: SweepOutcome, metric: str | None = None) -> dict[str, str]:
    """Write the summary table and the heat map; their paths by name."""
    plan, out = outcome.plan, Path(outcome.out)
    rows = summary_rows(outcome.records, plan.task)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    written = {"summary": str(out / "summary.csv")}
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    if len(plan.axes) >= 2:
        from workbench.compile.load import read_spec_data

        axes, x, y = plan.axes, 0, 1
        pair = overlay_axes(axes[:2])
        scales = None
        if pair is not None:
            x, y = axes.index(pair[0]), axes.index(pair[1])
            raw, _ = read_spec_data(plan.spec_file)
            data = load_data(plan.data_source, plan.scaling) if plan.task == "train" else None
            scales = theory_curves(raw, *pair, plan, data)
        metric = metric or DEFAULT_METRIC[plan.task]
        title = f"{Path(plan.spec_file).name}: {plan.task}, {metric}"
        written["heatmap"] = str(write_heatmap(outcome.records, axes, x, y, plan.task, metric,
                                               out / "heatmap.png", title, scales))  # fmt: skip
    return written
