"""Fuzzing: malformed specs raise only SpecError; random valid specs load (YAML, JSON, Python)."""

from __future__ import annotations

import copy
import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_factory import SPEC_FILES

from benchmarks.fuzz.strategies import YAMLISH, damaged_text, mutated_specs, valid_specs
from workbench.compile import spec_from_dict, spec_from_text
from workbench.compile.graph import spec_graph
from workbench.compile.summary import summarize, total_depth
from workbench.errors import SpecError

SPECS = SPEC_FILES
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _kinds(nodes) -> list:
    return [(n.kind, n.path, _kinds(getattr(n, "body", ()))) for n in nodes]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_valid_specs_load(data):
    spec = spec_from_dict(copy.deepcopy(data))
    from_yaml = spec_from_text(yaml.safe_dump(data), file="r.yaml")
    from_json = spec_from_text(json.dumps(data, indent=1), file="r.json", fmt="json")
    assert len(spec.layers) == len(data["layers"])
    assert _kinds(spec.layers) == _kinds(from_yaml.layers) == _kinds(from_json.layers)
    assert summarize(spec) == summarize(from_yaml) == summarize(from_json)
    assert all(n.line is not None for n in from_yaml.layers + from_json.layers)
    assert spec_graph(spec).number_of_nodes() == len(spec.layers)
    assert total_depth(spec) >= 0


def _only_spec_errors(call) -> None:
    try:
        call()
    except SpecError as err:
        assert isinstance(err.path, str) and isinstance(str(err), str)
        assert err.line is None or err.line >= 1


@FUZZ
@given(mutated_specs())
def test_mutated_dicts_raise_only_spec_error(data):
    _only_spec_errors(lambda: spec_from_dict(data))


@FUZZ
@given(mutated_specs())
def test_mutated_yaml_and_json_raise_only_spec_error(data):
    try:
        text = yaml.safe_dump(data)
    except (yaml.YAMLError, ValueError):
        text = str(data)
    _only_spec_errors(lambda: spec_from_text(text, file="m.yaml"))
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return
    _only_spec_errors(lambda: spec_from_text(text, file="m.json", fmt="json"))


@FUZZ
@given(damaged_text())
def test_damaged_text_raises_only_spec_error(case):
    text, fmt = case
    _only_spec_errors(lambda: spec_from_text(text, file="d." + fmt, fmt=fmt))


@FUZZ
@given(st.text(YAMLISH, max_size=80) | st.text(max_size=40))
def test_random_text_raises_only_spec_error(text):
    _only_spec_errors(lambda: spec_from_text(text, file="t.yaml"))
    _only_spec_errors(lambda: spec_from_text(text, file="t.json", fmt="json"))
