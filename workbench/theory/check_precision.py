"""``--check-precision``: the error of a float64 result, stated by rerunning the same
computation under mpmath at twice float64's digits (on a sample of inputs for kernels) and
reporting the worst relative difference of every number both runs give."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

REFERENCE_DIGITS = 32  # twice float64's ~16
SAMPLE_INPUTS = 2  # inputs rerun for a kernel check (every entry among them is compared)


def worst_difference(low: Any, high: Any) -> tuple[float, int]:
    """(worst relative difference, numbers compared) over the numeric leaves the two results
    share (dicts by key, lists and arrays entry by entry); exact zeros in both are skipped."""
    worst, count = 0.0, 0
    if isinstance(low, dict) and isinstance(high, dict):
        for key in low.keys() & high.keys():
            w, c = worst_difference(low[key], high[key])
            worst, count = max(worst, w), count + c
        return worst, count
    if isinstance(low, list | tuple | np.ndarray) and isinstance(high, list | tuple | np.ndarray):
        for a, b in zip(
            np.ravel(np.asarray(low, dtype=object)), np.ravel(np.asarray(high, dtype=object))
        ):
            w, c = worst_difference(a, b)
            worst, count = max(worst, w), count + c
        return worst, count
    try:
        a, b = float(low), float(high)
    except (TypeError, ValueError):
        return 0.0, 0
    if isinstance(low, bool) or not (math.isfinite(a) and math.isfinite(b)) or a == b == 0:
        return 0.0, 0
    return abs(a - b) / max(abs(b), 1e-300), 1


def stated(low: Any, high: Any, what: str) -> dict:
    """The check's summary for JSON and tables."""
    worst, count = worst_difference(low, high)
    return {
        "reference": f"mpmath ({REFERENCE_DIGITS} digits), {what}",
        "compared": count,
        "worst_relative_difference": worst,
    }


def check_analyze(spec: Any, result: dict) -> dict:
    from workbench.analysis import analyze_spec
    from workbench.precision import Mp

    return _guarded(lambda: stated(result, analyze_spec(spec, Mp(REFERENCE_DIGITS)).to_dict(),
                                   "the same analysis"))  # fmt: skip


def check_kernel(spec: Any, inputs: np.ndarray, result: Any, ntk: bool, parameterization: str):
    from workbench.theory.evaluate import network_kernels

    k = min(SAMPLE_INPUTS, len(inputs))

    def run() -> dict:
        high = network_kernels(spec, inputs[:k], ntk, parameterization, digits=REFERENCE_DIGITS)
        low = {
            "nngp": result.nngp[:k, :k],
            "ntk": None if result.ntk is None else result.ntk[:k, :k],
        }
        if result.one_minus_c is not None and high.one_minus_c is not None:
            low["one_minus_c"] = result.one_minus_c[:k, :k]
        reference = {"nngp": high.nngp, "ntk": high.ntk, "one_minus_c": high.one_minus_c}
        return stated(low, reference, f"the first {k} inputs")

    return _guarded(run)


def check_spectrum(spec: Any, m: int, c0: float, depths: list[int], result: dict) -> dict:
    from workbench.theory.spectrum import ntk_spectrum

    def run() -> dict:
        high = ntk_spectrum(spec, m, c0, depths, digits=REFERENCE_DIGITS).to_dict()
        return stated(result["depths"], high["depths"], "every depth")

    return _guarded(run)


def _guarded(run) -> dict:
    try:
        return run()
    except WorkbenchError as exc:
        return {"reference": f"mpmath ({REFERENCE_DIGITS} digits)", "unavailable": exc.message}
