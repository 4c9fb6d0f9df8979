"""One fuzz example, guarded: run it with a wall-clock limit (SIGALRM, so the main thread of
a POSIX process) and sort what happened into accepted, typed (a WorkbenchError: the one-line
error users see), untyped (any other exception), hang (past the limit) or memory.

The engine is given half the limit as its time budget (``time_budget``, what a user's
``--max-seconds`` sets), so long but finite work — a deep block whose variances drift and
walk every pass, projected at minutes — ends in the engine's typed refusal with its
estimate, as it would for that user; a hang is then work that neither finished nor refused
within the limit (a probe without a budget, a loop without a pace)."""

from __future__ import annotations

import json
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.errors import WorkbenchError
from workbench.theory.pace import time_budget

OUTCOMES = ("accepted", "typed", "untyped", "hang", "memory")


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` swallows it."""


@dataclass
class Outcome:
    kind: str
    seconds: float
    detail: str = ""


def guarded(run: Callable[[], Any], seconds: float) -> Outcome:
    """``run()`` under a limit of ``seconds``: its outcome and wall time."""

    def alarm(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        with time_budget(seconds / 2):
            run()
        kind, detail = "accepted", ""
    except _Timeout:
        kind, detail = "hang", f"still running after {seconds} s"
    except MemoryError:
        kind, detail = "memory", "MemoryError"
    except WorkbenchError as err:
        kind, detail = "typed", err.message
    except Exception as err:  # the defect the harness exists to find
        kind, detail = "untyped", "".join(traceback.format_exception_only(err)).strip()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(kind, time.perf_counter() - start, detail)


# ---------------------------------------------------------------- targets


def check_text(case: tuple[str, str]) -> None:
    """What `workbench check` does with a spec file's text: load it and summarise it."""
    from workbench.compile import spec_from_text
    from workbench.compile.summary import summarize

    text, fmt = case
    summarize(spec_from_text(text, file=f"fuzz.{fmt}", fmt=fmt))


def probe_expression(text: str) -> None:
    """What `critical`/`analyze` ask of a custom activation before integrating: parse it,
    then its kinks, parity, homogeneity, singularity distance and one Gaussian moment."""
    from workbench.activations import parse_activation
    from workbench.gaussian import expect
    from workbench.precision import F64

    phi = parse_activation({"expr": text})
    _ = phi.kinks, phi.parity, phi.positive_homogeneity(), phi.singularity_distance
    expect(phi, phi, 1.0, 0.5, 1.0, F64)  # q11, q12, q22


def analyze_case(case: dict) -> None:
    """`analyze` of an FC net with the case's activation, σ_w², σ_b² and depth, then its
    kernel of two inputs."""
    import numpy as np

    from workbench.analysis import analyze_spec
    from workbench.compile import spec_from_dict
    from workbench.theory.evaluate import network_kernels

    spec = spec_from_dict({
        "name": "fuzz", "input": {"shape": [4]},
        "defaults": {"sigma_w2": case["sigma_w2"], "sigma_b2": case["sigma_b2"]},
        "layers": [{"dense": {"width": 4}},
                   {"repeat": {"times": case["depth"],
                               "body": [{"act": case["activation"]}, {"dense": {"width": 4}}]}}],
    })  # fmt: skip
    json.dumps(analyze_spec(spec).to_dict(), default=str)
    inputs = np.array([[1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.8, 0.1]]) * case["scale"]
    network_kernels(spec, inputs, ntk=True)
