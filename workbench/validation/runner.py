"""Run a validation suite: theory against Monte-Carlo, check by check, with a progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from workbench.errors import SpecError, WorkbenchError
from workbench.sim.network import build_network, resolve_device
from workbench.validation.quantities import PREFLIGHT, QUANTITIES, make_inputs
from workbench.validation.suite import Check, load_suite, source_free


@dataclass
class CheckResult:
    name: str
    quantity: str
    theory: float
    mc_mean: float
    mc_ci: float  # half-width of the Monte-Carlo interval at the check's confidence
    allowance: float  # stated finite-width allowance
    passed: bool
    width: int
    samples: int
    seconds: float
    error: str | None = None  # why the check could not run (it then counts as failed)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SuiteResult:
    name: str
    device: str
    quick: bool
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "suite": self.name,
            "device": self.device,
            "quick": self.quick,
            "checks": [c.to_dict() for c in self.checks],
            "passed": self.passed,
        }


def preflight(check: Check) -> None:
    """Everything about a check that can be known before simulating: a known quantity that
    covers the check's spec, layers and options. A SpecError names the suite file, the check's
    line and its name."""
    try:
        if check.quantity not in QUANTITIES:
            raise WorkbenchError(
                f"unknown quantity '{check.quantity}'",
                hint="one of " + ", ".join(sorted(QUANTITIES)),
            )
        prepare = PREFLIGHT.get(check.quantity)
        if prepare is not None:
            prepare(check)
    except WorkbenchError as err:
        raise SpecError(f"check '{check.name}': {err.message}", hint=err.hint,
                        **check.where) from None  # fmt: skip


def run_check(check: Check, device: str, dtype: str = "float64", seed: int = 0,
              networks: dict | None = None) -> CheckResult:  # fmt: skip
    """Simulate ``check.samples`` networks of width ``check.width`` and compare. ``networks``:
    a one-entry cache, so that consecutive checks of the same networks (a suite's checks at
    several layers or of several quantities) draw their weights once."""
    preflight(check)
    start = time.perf_counter()
    x = make_inputs(check.spec, check.inputs)
    statistics = check.options.get("bn_statistics", "batch")
    # the same layers (YAML merges lose the source lines, which do not change the networks)
    layers = source_free(check.spec.layers)
    key = (layers, check.spec.input_shape, check.width, check.samples, seed, dtype, device,
           statistics)  # fmt: skip
    net = None if networks is None else networks.get(key)
    if net is None:
        net = build_network(check.spec, check.width, check.samples, seed, dtype, device,
                            statistics)  # fmt: skip
        if networks is not None:
            networks.clear()
            networks[key] = net
    theory, samples = QUANTITIES[check.quantity](check, net, x)
    return compare(check, theory, samples, time.perf_counter() - start)


def compare(check: Check, theory: float, samples: np.ndarray, seconds: float) -> CheckResult:
    """Theory against the mean of independent Monte-Carlo samples: passed when they differ by
    at most the Student-t interval at the check's confidence plus its finite-width allowance
    (``relation`` at_least / at_most: when the mean is on the bound's side of it, so)."""
    samples = np.asarray(samples, float)
    if not np.isfinite(samples).all() or not np.isfinite(theory):
        raise WorkbenchError(f"check '{check.name}': non-finite theory or Monte-Carlo values")
    mean = float(samples.mean())
    n = len(samples)
    sem = float(samples.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    ci = float(stats.t.ppf(0.5 + check.confidence / 2, max(n - 1, 1)) * sem)
    allowance = check.relative * abs(theory) + check.absolute
    if check.relation == "at_least":  # the Monte-Carlo mean is bounded below by the theory
        passed = mean >= theory - ci - allowance
    elif check.relation == "at_most":
        passed = mean <= theory + ci + allowance
    else:
        passed = abs(mean - theory) <= ci + allowance
    return CheckResult(check.name, check.quantity, float(theory), mean, ci, allowance, passed,
                       check.width, check.samples, seconds)  # fmt: skip


def run_suite(
    path: str | Path, device: str = "auto", quick: bool = False, progress: bool = True
) -> SuiteResult:
    from tqdm import tqdm

    suite = load_suite(path, quick)
    for check in suite.checks:  # every check's problems before any simulation
        preflight(check)
    resolved = str(resolve_device(device))
    result = SuiteResult(suite.name, resolved, quick)
    networks: dict = {}
    for check in tqdm(suite.checks, desc=suite.name, disable=not progress, leave=False):
        try:
            result.checks.append(run_check(check, resolved, networks=networks))
        except WorkbenchError as err:  # keep the other checks' results; this one failed
            nan = float("nan")
            result.checks.append(CheckResult(check.name, check.quantity, nan, nan, nan, nan,
                                             False, check.width, check.samples, 0.0,
                                             error=str(err)))  # fmt: skip
    return result
