"""``python -m benchmarks.fuzz [--examples N] [--seconds S] [--json]``: the full fuzz run —
N spec texts (mutated trees, damaged and hostile text), N/2 expressions and N/30 numeric
cases across activations × phases × depths 10, 10³, 10⁵ — each under a time limit, then a
table of outcomes per family (accepted, typed error, untyped, hang, memory), the slowest
example, peak memory, and every untyped error or hang in full."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tqdm import tqdm

from benchmarks.fuzz.outcomes import OUTCOMES, analyze_case, check_text, guarded, probe_expression
from benchmarks.fuzz.strategies import (
    CANARY,
    damaged_text,
    expressions,
    hostile_text,
    mutated_specs,
    numeric_cases,
)


def _as_text(data: object) -> tuple[str, str]:
    return json.dumps(data, default=str), "json"


FAMILIES = {
    "specs": (lambda n: n, check_text,
              st.one_of(damaged_text(), hostile_text(), mutated_specs().map(_as_text))),
    "expressions": (lambda n: max(1, n // 2), probe_expression, expressions()),
    "numeric": (lambda n: max(1, n // 30), analyze_case, numeric_cases()),
}  # fmt: skip


def run_family(name: str, examples: int, seconds: float, strategy: Any = None) -> dict:
    """Every generated example of one family (``strategy``: another generator of the same
    kind of example) through its target, guarded; hypothesis derandomised, so reproducible."""
    _, target, default = FAMILIES[name]
    strategy = default if strategy is None else strategy
    CANARY.unlink(missing_ok=True)
    counts: Counter = Counter()
    problems: list[dict] = []
    slowest = (0.0, "")
    bar = tqdm(total=examples, desc=name, leave=False)

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
    @given(strategy)
    def one(example: object) -> None:
        nonlocal slowest
        outcome = guarded(lambda: target(example), seconds)
        counts[outcome.kind] += 1
        if outcome.seconds > slowest[0]:
            slowest = (outcome.seconds, repr(example)[:200])
        if outcome.kind in ("untyped", "hang", "memory"):
            problems.append({"example": repr(example)[:400], "outcome": outcome.kind,
                             "detail": outcome.detail[:400]})  # fmt: skip
        bar.update()

    one()
    bar.close()
    executed = CANARY.exists()  # an injection's code ran (it writes this file)
    if executed:
        problems.append({"example": "an injection", "outcome": "code executed",
                         "detail": f"{CANARY} was written"})  # fmt: skip
    return {"family": name, "examples": sum(counts.values()), **{k: counts[k] for k in OUTCOMES},
            "code_executed": executed, "slowest_seconds": round(slowest[0], 3),
            "slowest": slowest[1], "problems": problems}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000, help="spec texts (default 10000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="limit per example")
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for name in args.family or list(FAMILIES):
        count = FAMILIES[name][0](args.examples)
        rows.append(run_family(name, count, args.seconds))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"rows": rows, "peak_memory_mb": peak_mb}, indent=2))
    else:
        print(f"{'family':12} {'examples':>8} " + " ".join(f"{k:>9}" for k in OUTCOMES)
              + f" {'slowest s':>9} {'code ran':>8}")  # fmt: skip
        for row in rows:
            ran = "YES" if row["code_executed"] else "no"
            print(f"{row['family']:12} {row['examples']:>8} "
                  + " ".join(f"{row[k]:>9}" for k in OUTCOMES)
                  + f" {row['slowest_seconds']:>9} {ran:>8}")  # fmt: skip
        print(f"peak memory: {peak_mb:.0f} MB")
        for row in rows:
            print(f"slowest {row['family']}: {row['slowest']}")
        for row in rows:
            for problem in row["problems"]:
                print(f"\n[{row['family']}: {problem['outcome']}] {problem['example']}\n"
                      f"  {problem['detail']}")  # fmt: skip
    bad = sum(row[k] for row in rows for k in ("untyped", "hang", "memory", "code_executed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
