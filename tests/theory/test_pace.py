"""The time budget of deep repeat blocks (theory.pace): a block whose variances drift is
refused early with its projected time; one that settles runs to the end."""

from __future__ import annotations

import time

import numpy as np
import pytest

from workbench.errors import TheoryError
from workbench.theory.evaluate import network_kernels
from workbench.theory.pace import DEFAULT_SECONDS, time_budget

INPUTS = np.array([[1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.8, 0.1]])


def _deep(make_spec, act: str, sigma_w2: float, sigma_b2: float, depth: int):
    body = [{"act": act}, {"dense": {"width": 4}}]
    return make_spec([{"dense": {"width": 4}}, {"repeat": {"times": depth, "body": body}}],
                     shape=(4,), sw2=sigma_w2, sb2=sigma_b2)  # fmt: skip


def test_drifting_variances_are_refused_with_their_projected_time(make_spec):
    """softplus at σ_w² = 2, σ_b² = 0 has no finite fixed point (q grows like a power of the
    depth), so every pass walks the general engine (~20 ms): 10⁵ passes would take ~35 min."""
    spec = _deep(make_spec, "softplus", 2.0, 0.0, 100_000)
    start = time.perf_counter()
    with pytest.raises(TheoryError, match=r"layers\[1\]: the remaining \d+ passes would take") as e:
        network_kernels(spec, INPUTS)
    assert time.perf_counter() - start < 60  # a hang guard: ~5 s here
    assert "do not settle" in e.value.message and "600 s" in e.value.message
    assert "--max-seconds" in e.value.hint


def test_budget_is_set_by_a_context_and_lifted_by_none(make_spec):
    spec = _deep(make_spec, "softplus", 2.0, 0.0, 300)
    with time_budget(0.5), pytest.raises(TheoryError, match="past the time budget of 0.5 s"):
        network_kernels(spec, INPUTS)
    with time_budget(None):
        out = network_kernels(spec, INPUTS)
    assert np.isfinite(out.nngp).all()
    with pytest.raises(ValueError):
        with time_budget(0):
            pass


def test_settling_variances_are_not_refused(make_spec):
    """tanh in its ordered phase: the variances of inputs of different norms converge on q*
    geometrically, then the settled loop runs the rest fused; a tight budget lets it finish."""
    spec = _deep(make_spec, "tanh", 1.5, 0.05, 100_000)
    with time_budget(20):
        out = network_kernels(spec, INPUTS)
    assert np.isfinite(out.nngp).all()


def test_cli_max_seconds():
    from workbench.cli import DEFAULT_SECONDS as CLI_DEFAULT
    from workbench.cli import _budget

    assert CLI_DEFAULT == DEFAULT_SECONDS
    assert _budget("0") is None and _budget("2.5") == 2.5
    with pytest.raises(Exception, match="0 or more"):
        _budget("-1")
