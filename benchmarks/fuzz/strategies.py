"""Hypothesis strategies for the fuzz harness (issue 15): valid and mutated spec trees, damaged
and hostile spec text (aliases and alias bombs, tags, unicode, huge and odd numbers, deep
nesting), activation expressions (valid, near-valid, injections, huge exponents, deep nesting,
long strings) and numeric cases across activations, phases and depths."""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import strategies as st

ACTIVATIONS = ("tanh", "relu", "erf")


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


# ---------------------------------------------------------------- hostile spec text
ODD_NUMBERS = ["0x10", "010", "0b101", "1_000", "1:30", "1e-400", "1.0e400", ".inf", "-.nan",
               "1e308", "123456789012345678901234567890", "+1", "1.", "-0", "4.9e-324"]  # fmt: skip
# a file only executed code would write: the run checks it is never there (run_family)
CANARY = Path(tempfile.gettempdir()) / f"workbench-fuzz-canary-{os.getpid()}"  # per process
TAGS = ["!!python/object:os.system", "!!str", "!!binary", "!!int", "!!float", "!foo", "!!set",
        f"!!python/object/apply:os.system ['touch {CANARY}']\nwritten:"]  # fmt: skip
UNICODE = ["σ", "\u00e9", "\u202e", "\u0000", "\ufeff", "\U0001f600", "\ud800"]


@st.composite
def hostile_text(draw) -> tuple[str, str]:
    """A spec text with one hostile ingredient where a value or key would be."""
    data = draw(valid_specs())
    text = yaml.safe_dump(data, allow_unicode=True)
    kind = draw(st.sampled_from(["number", "tag", "unicode", "alias", "bomb", "nesting", "long"]))
    if kind == "number":
        text = text.replace("width: ", f"width: {draw(st.sampled_from(ODD_NUMBERS))} #", 1)
        text = text.replace("sigma_w2: ", f"sigma_w2: {draw(st.sampled_from(ODD_NUMBERS))} #", 1)
    elif kind == "tag":
        text = text.replace("name: ", f"name: {draw(st.sampled_from(TAGS))} ", 1)
    elif kind == "unicode":
        text = text.replace("name: ", "name: " + "".join(draw(st.lists(
            st.sampled_from(UNICODE), min_size=1, max_size=4))), 1)  # fmt: skip
    elif kind == "alias":
        text = "base: &b {dense: {width: 4}}\n" + text.replace("layers:\n", "layers:\n- *b\n", 1)
    elif kind == "bomb":
        fan, levels = draw(st.integers(2, 12)), draw(st.integers(2, 9))
        lines = ["name: bomb", "input: {shape: [4]}", "defaults: {sigma_w2: 1, sigma_b2: 0}",
                 "l0: &l0 {dense: {width: 4}}"]  # fmt: skip
        for i in range(1, levels + 1):
            body = ", ".join([f"*l{i - 1}"] * fan)
            lines.append(f"l{i}: &l{i} {{repeat: {{times: 1, body: [{body}]}}}}")
        lines.append(f"layers: [*l{levels}]")
        text = "\n".join(lines) + "\n"
    elif kind == "nesting":
        depth = draw(st.integers(50, 3000))
        text = "name: deep\ninput: {shape: [4]}\nlayers: " + "[" * depth + "]" * depth + "\n"
    else:
        text = text.replace("name: ", "name: " + "n" * draw(st.integers(1000, 200_000)), 1)
    fmt = "yaml"
    if kind in ("number", "unicode", "long") and draw(st.booleans()):
        try:
            text, fmt = json.dumps(yaml.safe_load(text)), "json"
        except Exception:  # noqa: BLE001 - a text YAML itself refuses stays YAML
            pass
    return text, fmt


# ---------------------------------------------------------------- expressions
FUNCTIONS = ["abs", "arctan", "atan", "cos", "cosh", "erf", "erfc", "exp", "heaviside",
             "log", "relu", "sigmoid", "sign", "sin", "sinh", "softplus", "sqrt", "step",
             "tanh"]  # fmt: skip
INJECTIONS = ["__import__('os').system('true')", "x.__class__", "lambda: x", "exec('1')",
              "open('/etc/passwd')", "x; import os", "`x`", "x if x else x", "[x]", "{x}",
              "x @ x", "x := 1", "globals()", "().__class__.__bases__",
              f"__import__('pathlib').Path('{CANARY}').touch()", f"open('{CANARY}', 'w')",
              f"sin(x) + __import__('os').system('touch {CANARY}')"]  # fmt: skip
NUMBERS = ["1", "0.5", "2", "1e308", "1e-320", "10**400", "1e15", "3.14159", "0", "-7"]


def _expression(depth: int) -> st.SearchStrategy[str]:
    atom = st.sampled_from(["x", "x", "pi", "e"] + NUMBERS)
    if depth == 0:
        return atom
    inner = _expression(depth - 1)
    unary = st.builds(lambda f, a: f"{f}({a})", st.sampled_from(FUNCTIONS), inner)
    binary = st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner,
                       st.sampled_from(["+", "-", "*", "/", "**"]), inner)  # fmt: skip
    extremum = st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["max", "min"]),
                         inner, inner)  # fmt: skip
    return atom | unary | binary | extremum


@st.composite
def expressions(draw) -> str:
    """Valid expressions in x, and near-valid, hostile, huge and long variants."""
    text = draw(_expression(draw(st.integers(0, 4))))
    kind = draw(st.sampled_from(["valid", "valid", "near", "injection", "exponent", "nesting",
                                 "long"]))  # fmt: skip
    if kind == "near":
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, len(text)))
            text = text[:pos] + draw(st.text("x()+-*/,.e0123456789 _a", max_size=2)) + text[pos:]
    elif kind == "injection":
        text = draw(st.sampled_from(INJECTIONS))
    elif kind == "exponent":
        text = f"({text}) ** {draw(st.sampled_from(['10**10', '1e300', '9999', '-1e300', 'x**x']))}"
    elif kind == "nesting":
        f = draw(st.sampled_from(FUNCTIONS))
        depth = draw(st.integers(5, 200))
        text = f"{f}(" * depth + "x" + ")" * depth
    elif kind == "long":
        text = "+".join(["x"] * draw(st.integers(100, 20_000)))
    return text


# ---------------------------------------------------------------- numeric cases
NUMERIC_ACTIVATIONS = ["tanh", "relu", "erf", "sigmoid", "arctan", "softsign", "gelu", "swish",
                       "softplus", "abs", "linear"]  # fmt: skip


@st.composite
def numeric_cases(draw, depths: tuple[int, ...] = (10, 1000, 100_000),
                  activations: tuple[str, ...] = tuple(NUMERIC_ACTIVATIONS)) -> dict:  # fmt: skip
    """An FC net across phases: σ_w² from deep in the ordered phase to far into the chaotic
    one (and near the critical values 1, 2, 1.76), σ_b² from 0 to 2, depth, input scale."""
    sigma_w2 = draw(st.sampled_from([0.1, 0.5, 0.99, 1.0, 1.01, 1.5, 1.7609546, 1.999, 2.0,
                                     2.001, 3.0, 4.0, 10.0]) | st.floats(0.05, 10.0))  # fmt: skip
    return {
        "activation": draw(st.sampled_from(activations)),
        "sigma_w2": sigma_w2,
        "sigma_b2": draw(st.sampled_from([0.0, 1e-6, 0.05, 0.5, 2.0])),
        "depth": draw(st.sampled_from(depths)),
        "scale": draw(st.sampled_from([1e-150, 1e-8, 1.0, 1e8, 1e150])),
    }
