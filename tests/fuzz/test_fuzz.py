"""The fuzz harness in CI (issue 15): a small fixed-seed sample of every family — hostile spec
texts, expressions, numeric cases — each example under a time limit; every one must end in a
result or a typed error (no untyped exception, no hang). The full run is
``python -m benchmarks.fuzz --examples 10000``."""

from __future__ import annotations

import pytest

from benchmarks.fuzz.__main__ import main, run_family
from benchmarks.fuzz.outcomes import guarded

SAMPLE = {"specs": 300, "expressions": 150, "numeric": 32}
# The numeric sample spans every activation, phase and depth (10, 10³, 10⁵): work that would
# outlast the limit (a drifting depth-10⁵ block walking every pass, ~2.5 ms each) must end in
# the engine's typed refusal, since the guard gives the engine half the limit as its budget.


@pytest.mark.parametrize("family", list(SAMPLE))
def test_every_example_ends_in_a_result_or_a_typed_error(family):
    row = run_family(family, SAMPLE[family], seconds=10.0)
    assert row["examples"] == SAMPLE[family]
    assert row["untyped"] == row["hang"] == row["memory"] == 0, row["problems"]
    assert not row["code_executed"], row["problems"]
    assert row["accepted"] > SAMPLE[family] // 10  # the targets run: not all refused up front


def test_the_guard_sorts_outcomes():
    """The harness can fail: a hang, an untyped error and a typed one are told apart."""
    import time

    from workbench.errors import SpecError

    def spin():
        while True:
            time.sleep(0.01)

    def typed():
        raise SpecError("bad spec")

    assert guarded(spin, 0.2).kind == "hang"
    assert guarded(lambda: 1 / 0, 1).kind == "untyped"
    assert guarded(typed, 1).kind == "typed"
    assert guarded(lambda: None, 1).kind == "accepted"


def test_the_full_run_prints_a_table(capsys):
    assert main(["--examples", "30", "--family", "specs"]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "untyped" in out and "peak memory" in out


def test_a_drifting_deep_block_is_refused_within_the_limit():
    """The full run's slowest numeric case: softplus at σ_w² = 2 grows q without bound, so
    all 10⁵ passes walk the asymptotic split (~2.5 ms each, ~250 s). Under the guard the
    engine's budget is half the limit: a typed refusal with its estimate, within seconds."""
    from benchmarks.fuzz.outcomes import analyze_case

    case = {"activation": "softplus", "sigma_w2": 2.0, "sigma_b2": 1e-6, "depth": 100_000,
            "scale": 1e-8}  # fmt: skip
    outcome = guarded(lambda: analyze_case(case), 10.0)
    assert outcome.kind == "typed" and "past the time budget of 5 s" in outcome.detail
    assert outcome.seconds < 5


def test_the_canary_would_see_executed_code(monkeypatch):
    """The harness can fail on code execution too: the injections write CANARY if run; the
    workbench refuses one (typed), and a target that ran it (as an eval would) is caught."""
    from hypothesis import strategies as st

    import benchmarks.fuzz.__main__ as harness
    from benchmarks.fuzz.strategies import CANARY, INJECTIONS

    injection = st.just(next(text for text in INJECTIONS if "touch()" in text))
    row = harness.run_family("expressions", 1, 10.0, strategy=injection)
    assert not row["code_executed"] and row["typed"] == 1
    count, _, strategy = harness.FAMILIES["expressions"]
    executes = (count, lambda text: CANARY.touch(), strategy)
    monkeypatch.setitem(harness.FAMILIES, "expressions", executes)
    try:
        assert harness.run_family("expressions", 1, 10.0, strategy=injection)["code_executed"]
    finally:
        CANARY.unlink(missing_ok=True)
