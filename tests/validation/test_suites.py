"""Validation suites: every shipped suite passes in its --quick form, the JSON has the promised
shape, failing checks give a non-zero exit, malformed suites give typed errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from spec_factory import ROOT

from workbench.cli import main
from workbench.validation import quantities
from workbench.validation.suite import load_suite

SUITES = sorted((ROOT / "validate").glob("*.yaml"))


def test_the_suites_are_shipped():
    names = {p.stem for p in SUITES}
    assert {"fc-tanh-qc", "dynamical-isometry", "conv-orthogonal", "gradient-norms-cnn",
            "gradients", "fisher-bn"} <= names  # fmt: skip


@pytest.mark.parametrize("suite", SUITES, ids=[p.stem for p in SUITES])
def test_suite_passes_quick(suite, capsys):
    code = main(["validate", str(suite), "--quick", "--json", "--device", "cpu"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, [c for c in result["checks"] if not c["passed"]]
    assert result["passed"] is True and result["quick"] is True
    for check in result["checks"]:
        assert {"name", "theory", "mc_mean", "mc_ci", "passed"} <= set(check)
        assert np.isfinite([check["theory"], check["mc_mean"], check["mc_ci"]]).all()
    _assert_every_check_can_fail(suite, result["checks"])


# a bound check's quantity -> the equality check of the same theory value
PAIRED_BOUNDS = {"fisher_lambda_max": "fisher_lower"}


def _assert_every_check_can_fail(suite, results):
    """The same Monte-Carlo samples against the theory moved by ±5%: every check fails.
    A bound check (``relation: at_least / at_most``) tests an inequality, not a value, and a
    loose bound's 5% error cannot show in it; each suite pairs its bounds with equality checks
    of the same theory values on the same networks, which this asserts are powered."""
    checks = load_suite(suite, quick=True).checks
    bounds = {c.quantity for c in checks if c.relation != "equal"}
    equal = {c.quantity for c in checks if c.relation == "equal"}
    assert all(PAIRED_BOUNDS.get(q) in equal for q in bounds), "a bound without its equality"
    for check, result in zip(checks, results, strict=True):
        if check.relation != "equal":
            continue
        for factor in (1.05, 0.95):
            theory = factor * result["theory"]
            allowance = check.relative * abs(theory) + check.absolute
            assert abs(result["mc_mean"] - theory) > result["mc_ci"] + allowance, (
                f"{check.name}: a {factor - 1:+.0%} error in the theory would pass"
            )


def test_a_failing_check_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(
        quantities.QUANTITIES, "biased", lambda check, net, x: (1.0, np.array([2.0, 2.1, 1.9]))
    )
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nchecks:\n  - name: biased\n    quantity: biased\n    width: 4\n    samples: 3\n"
        "    spec: {name: t, input: {shape: [8]}, defaults: {sigma_w2: 1, sigma_b2: 0},\n"
        "           layers: [{dense: {width: 4}}]}\n"
    )
    assert main(["validate", str(suite), "--device", "cpu"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: s\nchecks:\n  - name: a\n    quantiy: q\n", "unknown check key 'quantiy'"),
        ("name: s\nchecks:\n  - name: a\n    quantity: q\n", "missing required key"),
        ("name: s\nchecks: 3\n", "a list `checks`"),
        (
            "name: s\nchecks:\n  - name: a\n    quantity: q\n    width: 4\n    samples: 2\n"
            "    spec: {name: t, input: {shape: [3]}, layers: [{dense: {widht: 4}}]}\n",
            "unknown key 'widht'",
        ),
    ],
)
def test_malformed_suites_are_typed_errors(tmp_path, capsys, text, message):
    suite = tmp_path / "bad.yaml"
    suite.write_text(text)
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.yaml" in err and "Traceback" not in err


CHEAP_CHECK = (
    "  - name: {name}\n    quantity: {quantity}\n    width: 8\n    samples: 3\n{extra}"
    "    spec: {{name: t, input: {{shape: [8]}}, defaults: {{sigma_w2: 1.5, sigma_b2: 0.1}},\n"
    "           layers: [{{dense: {{width: 8}}}}, {{act: tanh}}, {{dense: {{width: 8}}}}]}}\n"
)


@pytest.mark.parametrize(
    "quantity, extra, message",
    [
        ("q", "    layer: 300\n", "layer 300 is out of range: the spec has 2 weight layers"),
        ("qq", "", "unknown quantity 'qq'"),
        ("gradient_rate", "    options: {fit_layers: [0, 9]}\n", "fit_layers [0, 9] is outside"),
        ("gradient_slope", "", "needs a repeat block"),
    ],
)
def test_every_check_is_validated_before_any_runs(tmp_path, monkeypatch, capsys, quantity,
                                                   extra, message):  # fmt: skip
    """A later check that cannot run stops the suite before the first simulates, with an
    error naming the suite file, the check's line and its name."""
    ran = []
    monkeypatch.setitem(quantities.QUANTITIES, "q",
                        lambda check, net, x: ran.append(1) or (0.0, np.zeros(3)))  # fmt: skip
    suite = tmp_path / "s.yaml"
    fine = CHEAP_CHECK.format(name="fine", quantity="q", extra="")
    later = CHEAP_CHECK.format(name="later", quantity=quantity, extra=extra)
    suite.write_text("name: s\nchecks:\n" + fine + later)
    assert main(["validate", str(suite), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert not ran and message in err and "check 'later'" in err
    assert "s.yaml:9: checks[1]" in err and "Traceback" not in err


def test_a_check_failing_at_run_time_keeps_the_others(tmp_path, monkeypatch, capsys):
    """A check whose simulation raises counts as failed, with its reason; the checks around it
    keep their results."""
    from workbench.errors import TheoryError

    def broken(check, net, x):
        raise TheoryError("the kernel overflowed")

    monkeypatch.setitem(quantities.QUANTITIES, "broken", broken)
    monkeypatch.setitem(quantities.QUANTITIES, "q",
                        lambda check, net, x: (1.0, np.array([1.0, 1.01, 0.99])))  # fmt: skip
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nchecks:\n" + "".join(
        CHEAP_CHECK.format(name=n, quantity=q, extra="")
        for n, q in (("first", "q"), ("second", "broken"), ("third", "q"))))  # fmt: skip
    assert main(["validate", str(suite), "--device", "cpu", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    passed = {c["name"]: (c["passed"], c["error"]) for c in result["checks"]}
    assert passed["first"] == (True, None) and passed["third"] == (True, None)
    assert passed["second"][0] is False and "overflowed" in passed["second"][1]


def test_a_bound_check_passes_on_its_side_only(tmp_path, monkeypatch, capsys):
    """``relation: at_least``: a Monte-Carlo mean far above the theory passes, one below it
    fails (the Fisher's λ_max against its lower bound)."""
    monkeypatch.setitem(quantities.QUANTITIES, "above",
                        lambda check, net, x: (1.0, np.array([5.0, 5.1, 4.9])))  # fmt: skip
    monkeypatch.setitem(quantities.QUANTITIES, "below",
                        lambda check, net, x: (1.0, np.array([0.5, 0.51, 0.49])))  # fmt: skip
    extra = "    relation: at_least\n"
    suite = tmp_path / "s.yaml"
    checks = [CHEAP_CHECK.format(name=q, quantity=q, extra=extra) for q in ("above", "below")]
    suite.write_text("name: s\nchecks:\n" + "".join(checks))
    assert main(["validate", str(suite), "--device", "cpu", "--json"]) == 1
    result = {c["name"]: c["passed"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert result == {"above": True, "below": False}
