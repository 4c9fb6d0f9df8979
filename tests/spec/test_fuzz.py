"""Fuzzing: malformed specs raise only SpecError; random valid specs load (YAML, JSON, Python)."""

from __future__ import annotations

import copy
import json
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_factory import SPEC_FILES

from workbench.compile import spec_from_dict, spec_from_text
from workbench.compile.graph import spec_graph
from workbench.compile.summary import summarize, total_depth
from workbench.errors import SpecError

SPECS = SPEC_FILES
ACTIVATIONS = ("tanh", "relu", "erf")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- valid specs
variances = st.floats(0.05, 4.0, allow_nan=False)


def _sigmas(draw, need: bool) -> dict:
    out = {}
    if need or draw(st.booleans()):
        out["sigma_w2"] = draw(variances)
    if need or draw(st.booleans()):
        out["sigma_b2"] = draw(st.sampled_from([0, 0.0, 0.1, 1]))
    return out


def _layer(draw, shape: tuple, need_sigma: bool, depth: int) -> tuple[object, tuple]:
    """One random valid layer for ``shape`` and its output shape."""
    spatial = len(shape) > 1
    kinds = ["act", "bn", "flatten"] + (["conv", "pool"] if spatial else ["dense"])
    if depth < 2:
        kinds += ["repeat", "residual"]
    kind = draw(st.sampled_from(kinds))
    if kind == "act":
        name = draw(st.sampled_from(ACTIVATIONS))
        return {"act": name}, shape
    if kind == "bn":
        return draw(
            st.sampled_from(["bn", {"bn": {}}, {"bn": {"gamma": 1.5, "beta": -0.1}}])
        ), shape
    if kind == "flatten":
        form = draw(st.sampled_from(["flatten", {"flatten": {}}, {"flatten": None}]))
        return form, (math.prod(shape),)
    if kind == "pool":
        return {"pool": "global_avg"}, shape[:1]
    if kind == "dense":
        width = draw(st.integers(1, 64))
        init = draw(st.sampled_from([{}, {"init": "orthogonal"}]))
        return {"dense": {"width": width, **init, **_sigmas(draw, need_sigma)}}, (width,)
    if kind == "conv":
        channels = draw(st.integers(1, 8))
        taps = [draw(st.sampled_from([k for k in (1, 3, 5) if k <= n])) for n in shape[1:]]
        raw = {"channels": channels, "kernel": taps, **_sigmas(draw, need_sigma)}
        if draw(st.booleans()):
            count = math.prod(taps)
            weights = draw(st.lists(st.integers(0, 5), min_size=count, max_size=count))
            weights[-1] += 1
            raw["variance"] = [w / sum(weights) for w in weights]
        return {"conv": raw}, (channels, *shape[1:])
    body, out = _body(draw, shape, need_sigma, depth + 1)
    if kind == "repeat":
        return {"repeat": {"times": draw(st.integers(1, 10**6)), "body": body}}, shape
    return {"residual": {"body": body, "scale": draw(st.floats(0, 2))}}, shape


def _body(draw, shape: tuple, need_sigma: bool, depth: int) -> tuple[list, tuple]:
    """A shape-preserving body: random layers, then a dense/conv back to ``shape``."""
    layers, current = [], shape
    for _ in range(draw(st.integers(0, 2))):
        if len(shape) > 1 and len(current) == 1:
            break
        layer, current = _layer(draw, current, need_sigma, depth)
        if len(shape) > 1 and len(current) == 1:  # pooled/flattened: undo by retrying simpler
            layers.append({"act": "relu"})
            current = shape
            continue
        layers.append(layer)
    last = {"width": shape[0]} if len(shape) == 1 else {"channels": shape[0], "kernel": 1}
    last.update(_sigmas(draw, need_sigma))
    layers.append({"dense": last} if len(shape) == 1 else {"conv": last})
    return layers, shape


@st.composite
def valid_specs(draw) -> dict:
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
    with_defaults = draw(st.booleans())
    data: dict = {"name": draw(st.text("abcxyz-_", min_size=1, max_size=8))}
    data["input"] = {"shape": list(shape)}
    if with_defaults:
        data["defaults"] = {"sigma_w2": draw(variances), "sigma_b2": 0.05}
    layers, current = [], shape
    for _ in range(draw(st.integers(1, 5))):
        layer, current = _layer(draw, current, not with_defaults, 0)
        layers.append(layer)
    data["layers"] = layers
    return data


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


# ---------------------------------------------------------------- malformed specs
junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["dense", "conv", "flatten", "bn", "global_avg", "tanh", "1e-3", "3"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=3)
    ),
    max_leaves=8,
)
KEYS = [
    "width",
    "widht",
    "channels",
    "kernel",
    "variance",
    "sigma_w2",
    "sigma_b2",
    "times",
    "body",
    "scale",
    "init",
    "expr",
    "gamma",
    "name",
    "input",
    "shape",
    "layers",
    "repeat",
    "dense",
    "conv",
    "act",
    "flatten",
    "pool",
    "",
    "defaults",
]


def _locations(data, out):
    """Every (container, key/index) in the raw tree."""
    if isinstance(data, dict):
        for key in list(data):
            out.append((data, key))
            _locations(data[key], out)
    elif isinstance(data, list):
        for index in range(len(data)):
            out.append((data, index))
            _locations(data[index], out)
    return out


@st.composite
def mutated_specs(draw) -> dict:
    data = copy.deepcopy(draw(valid_specs()))
    for _ in range(draw(st.integers(1, 3))):
        spots = _locations(data, [])
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["delete", "rename", "retype", "retype"]))
        if action == "delete":
            del container[key]
        elif action == "rename" and isinstance(container, dict):
            new = draw(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers())
            container[new] = container.pop(key)
        else:
            container[key] = draw(junk)
    if draw(st.integers(0, 9)) == 9:  # now and then the whole document is junk
        return draw(junk)
    return data


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


YAMLISH = "abdenstwhix:-[]{},\n #&*!|>'\"0123456789._?%@`\t"


@st.composite
def damaged_text(draw) -> tuple[str, str]:
    fmt = draw(st.sampled_from(["yaml", "json"]))
    data = draw(valid_specs())
    text = yaml.safe_dump(data) if fmt == "yaml" else json.dumps(data, indent=2)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:pos] + draw(st.text(YAMLISH, max_size=4)) + text[pos + cut :]
    return text, fmt


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
