"""A time budget for deep repeat blocks: project how long the remaining passes will take and
refuse, with the estimate, what would run past the budget instead of running for an hour.

Most deep blocks are fast: their variances settle on a fixed point and the rest of the
passes run as one fused loop (``settled_loop``), or the spec is a chain program. A block
whose variances drift (no finite fixed point: softplus or swish at σ_w² ≈ 2 grow like a
power of the depth) or whose body has no fused form walks every pass on the general engine,
milliseconds each. Every CHECK_EVERY passes after the first FIRST_CHECK seconds the pace
estimates the passes still to walk — all of them, or, while every variance converges
geometrically (by 0.5% a pass at least) on one value in a body the settled loop can run,
those until it settles — at
the rate of the recent passes, and raises a TheoryError naming the block when that exceeds
the budget (600 s unless set: ``with time_budget(seconds):``, None for no limit; the CLI's
``--max-seconds``)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from workbench.errors import TheoryError
from workbench.theory.state import KernelState

DEFAULT_SECONDS = 600.0
CHECK_EVERY = 16  # passes between projections
FIRST_CHECK = 1.0  # seconds of passes before the first projection (fast blocks never pay)
SETTLES_AT = 7e-15  # relative spread and change of the variances that count as settled
SLOWEST_RATE = 0.995  # a change shrinking slower per pass is not taken to settle (≥ 5000 passes)

_BUDGET: ContextVar[float | None] = ContextVar("workbench_time_budget", default=DEFAULT_SECONDS)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Within the block, refuse deep repeat blocks projected to take more than ``seconds``
    (None: never refuse)."""
    if seconds is not None and not seconds > 0:
        raise ValueError(f"a time budget must be positive seconds or None, got {seconds!r}")
    token = _BUDGET.set(seconds)
    try:
        yield
    finally:
        _BUDGET.reset(token)


class Pace:
    """The projection for one run of a repeat block of ``times`` passes; ``settles``: whether
    settled variances would let the rest run fused (a flat float64 body that lowers)."""

    def __init__(self, path: str, times: int, settles: bool) -> None:
        self.path, self.times, self.settles = path, times, settles
        self.budget = _BUDGET.get()
        self.start = time.perf_counter()
        self.marks: list[tuple[int, float, np.ndarray]] = []  # (pass, time, variances)
        self._last_change: float | None = None  # the variances' change over the last interval

    def check(self, done: int, state: KernelState) -> None:
        """After ``done`` passes: raise if the rest is projected past the budget."""
        if self.budget is None or done % CHECK_EVERY or done >= self.times:
            return
        now = time.perf_counter()
        if now - self.start < FIRST_CHECK and not self.marks:
            return
        self.marks = [*self.marks[-1:], (done, now, _variances(state))]
        if len(self.marks) < 2:
            return
        (p0, t0, v0), (p1, t1, v1) = self.marks
        per_pass = (t1 - t0) / (p1 - p0)
        remaining = self.times - done
        walked: float | None = remaining
        if self.settles:
            to_settle = self._to_settle(v0, v1)
            walked = None if to_settle is None else min(remaining, to_settle)
        if walked is None:  # one change seen: its rate is not known yet
            return
        projected = per_pass * walked
        if projected > self.budget:
            raise TheoryError(
                f"{self.path}: the remaining {remaining} passes would take about "
                f"{projected:.0f} s at {1e3 * per_pass:.3g} ms per pass on the general engine "
                f"({self._why(v0, v1)}), past the time budget of {self.budget:g} s",
                hint="allow more with --max-seconds N (CLI) or `with workbench.time_budget(N):`"
                " (None: no limit), or use fewer layers",
            )

    def _to_settle(self, before: np.ndarray, after: np.ndarray) -> float | None:
        """Passes until the variances settle, by the geometric rate of their change over the
        last two intervals between marks (inf when they do not converge so; None after the
        first interval)."""
        if before.shape != after.shape or not after.size or not (after > 0).all():
            return math.inf
        change = float(np.max(np.abs(after - before) / after))
        spread = float((after.max() - after.min()) / after.max())
        if change <= SETTLES_AT and spread <= SETTLES_AT:
            return 0.0
        if self._last_change is None or not change < self._last_change:
            first, self._last_change = self._last_change is None, change
            return None if first else math.inf
        rate = (change / self._last_change) ** (1 / CHECK_EVERY)  # per pass
        self._last_change = change
        if rate > SLOWEST_RATE:  # algebraic drift also shrinks the change, ever more slowly
            return math.inf
        # the spread shrinks at least as fast as the change once both follow the same mode
        needed = max(change, spread) / SETTLES_AT
        return math.log(needed) / -math.log(rate)

    def _why(self, before: np.ndarray, after: np.ndarray) -> str:
        if not self.settles:
            return "this body has no fused form: every pass walks the graph"
        if after.size and before.shape == after.shape:
            low, high = float(after.min()), float(after.max())
            return (f"the variances do not settle on a fixed point: {float(before.max()):.6g} "
                    f"-> {high:.6g} over the last {CHECK_EVERY} passes, spread "
                    f"{(high - low) / high if high > 0 else 0.0:.3g}")  # fmt: skip
        return "the variances do not settle on a fixed point"


def _variances(state: KernelState) -> np.ndarray:
    """The state's variances (of the field when an activation is pending), as floats."""
    kernel = state.nngp if state.phi is None else state.field_nngp
    return np.asarray(state.own_variances(kernel), float).ravel()
