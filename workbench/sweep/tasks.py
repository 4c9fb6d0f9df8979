"""What one sweep cell computes, as a plain function a Dask worker (or this process) runs:
``train`` (a finite network trained on data) or a theory quantity of the cell's spec."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from workbench.errors import WorkbenchError

THEORY = ("analyze", "fisher", "ntk-spectrum", "kernel")
KERNEL_INPUTS = 8  # random Gaussian inputs (seed 0) of the kernel and NTK-spectrum tasks
SPECTRUM_C0 = 0.5  # the NTK spectrum task's pairwise input correlation
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


def _fisher(spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    """``workbench fisher`` in the paper's model (population statistics, no momentum)."""
    from workbench.compile import spec_from_dict
    from workbench.theory.fisher import fisher_bounds

    return fisher_bounds(spec_from_dict(spec_data)).to_dict()


def _ntk_spectrum(spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    """``workbench ntk-spectrum`` of KERNEL_INPUTS inputs at correlation SPECTRUM_C0, at the
    depth of the spec's first repeat block."""
    from workbench.compile import spec_from_dict
    from workbench.nodes.base import blocks
    from workbench.theory.spectrum import ntk_spectrum

    spec = spec_from_dict(spec_data)
    depth = next((b.times for b in blocks(spec.layers)), 1)
    return ntk_spectrum(spec, KERNEL_INPUTS, SPECTRUM_C0, [depth]).to_dict()


def _kernel(spec_data: Any, settings: dict, data: Any, device: str) -> dict:
    """NNGP and NTK of KERNEL_INPUTS standard Gaussian inputs (seed 0): their mean diagonal
    and mean off-diagonal correlation."""
    import numpy as np

    from workbench.compile import spec_from_dict
    from workbench.theory.evaluate import network_kernels

    spec = spec_from_dict(spec_data)
    x = np.random.default_rng(0).standard_normal((KERNEL_INPUTS, *spec.input_shape))
    found = network_kernels(spec, x, ntk=True)
    out = found.to_dict()
    for name, k in (("nngp", found.nngp), ("ntk", found.ntk)):
        k = k.reshape(KERNEL_INPUTS, KERNEL_INPUTS, -1).mean(axis=2) if k.ndim > 2 else k
        d = np.sqrt(np.diagonal(k))
        corr = k / np.outer(d, d)
        off = ~np.eye(KERNEL_INPUTS, dtype=bool)
        out |= {f"{name}_diagonal_mean": float(np.diagonal(k).mean()),
                f"{name}_correlation_mean": float(corr[off].mean())}  # fmt: skip
    return out


_TASKS: dict[str, Callable[..., dict]] = {"train": _train, "analyze": _analyze,
                                          "fisher": _fisher, "ntk-spectrum": _ntk_spectrum,
                                          "kernel": _kernel}  # fmt: skip


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
