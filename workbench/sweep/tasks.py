"""What one sweep cell computes, as a plain function a Dask worker (or this process) runs:
``train`` (a finite network trained on data) or a theory quantity of the cell's spec."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from workbench.errors import WorkbenchError

THEORY = ("analyze",)
TASKS = ("train", *THEORY)


def run_cell(task: str, spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    """The cell's result, or ``{"error": ...}``: a failing cell is recorded, never raised, so
    it cannot stop the sweep. Torch runs on one thread per cell (cells are the parallelism,
    and one thread makes a cell's numbers reproducible wherever it runs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"result": _TASKS[task](spec_data, settings, data, device)}
    except WorkbenchError as err:
        return {"error": f"{type(err).__name__}: {err}"}
    except Exception as err:  # noqa: BLE001 — recorded with its traceback, the sweep goes on
        return {"error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=20)}  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _train(spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    from workbench.sweep.train import TrainSettings, train_cell

    return train_cell(spec_data, data, TrainSettings(**settings), device)


def _analyze(spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    from workbench.analysis import analyze_spec
    from workbench.compile import spec_from_dict

    return analyze_spec(spec_from_dict(spec_data)).to_dict()


_TASKS: dict[str, Callable[..., dict]] = {"train": _train, "analyze": _analyze}


def pick_device(policy: str, worker_index: int | None) -> str:
    """``auto``: one CUDA device per worker (worker i takes device i mod count) when torch sees
    any, else the CPU; ``cpu`` or ``cuda`` as asked."""
    import torch

    if policy == "cpu" or (policy == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise WorkbenchError("--device cuda was asked for, but torch sees no CUDA device",
                             hint="use --device auto or cpu")  # fmt: skip
    return f"cuda:{(worker_index or 0) % torch.cuda.device_count()}"
