"""Validation suites: YAML files in validate/ listing checks of theory against Monte-Carlo.

    name: fc-tanh-qc
    description: ...
    checks:
      - name: q at layer 8, ordered
        spec: {...}                # inline spec, or a path relative to the suite file
        quantity: q                # theory and probe are joined on this name
        layer: 8                   # weight-layer index (0: the first layer's pre-activations)
        inputs: {count: 4, correlation: 0.3, seed: 0}
        width: 1000                # hidden width / channels of the simulated networks
        samples: 24                # independent networks (the ensemble)
        confidence: 0.99           # two-sided level of the Monte-Carlo interval
        allowance: {relative: 0.02, absolute: 0.0}   # finite-width allowance (stated)
        quick: {width: 200, samples: 8}              # overrides under --quick
        sweep: {key: defaults.sigma_w2, values: [1.0, 2.0]}   # one check per value

        relation: at_least         # the theory is a lower bound (at_most: upper); default equal

A check passes when |MC mean − theory| ≤ t·SEM + allowance, t the Student quantile at the
confidence level with samples − 1 degrees of freedom.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.compile.load import load_spec, spec_from_dict
from workbench.errors import SpecError
from workbench.spec.model import Spec
from workbench.spec.yaml_source import parse_yaml

CHECK_KEYS = {
    "name", "spec", "quantity", "layer", "inputs", "width", "samples", "confidence",
    "allowance", "quick", "sweep", "options", "relation",
}  # fmt: skip


@dataclass
class Check:
    name: str
    spec: Spec
    quantity: str
    width: int
    samples: int
    layer: int = -1
    inputs: dict = field(default_factory=dict)
    confidence: float = 0.99
    relative: float = 0.0
    absolute: float = 0.0
    options: dict = field(default_factory=dict)
    where: dict = field(default_factory=dict)  # file, line and path of the check in its suite
    relation: str = "equal"  # or at_least / at_most: the Monte-Carlo mean against a bound


@dataclass
class Suite:
    name: str
    description: str
    checks: list[Check]
    file: str


def source_free(value: Any) -> str:
    """``repr`` of a spec (or its layers) without the source lines its nodes carry: YAML merges
    lose the lines, which never change the networks or their theory — a cache key."""
    return re.sub(r"line=(\d+|None)", "", repr(value))


def load_suite(path: str | Path, quick: bool = False) -> Suite:
    """Read and validate a suite; errors name the file, line and key."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: suite file not found", file=str(path))
    data, lines = parse_yaml(path.read_text(), str(path))
    if not isinstance(data, Mapping) or not isinstance(data.get("checks"), list):
        raise SpecError("a suite needs `name` and a list `checks`", file=str(path), line=1)
    checks = []
    for i, raw in enumerate(data["checks"]):
        for expanded in _expand_sweep(raw, _where(path, lines, f"checks[{i}]")):
            checks.append(_check(expanded, path, lines, i, quick))
    return Suite(
        str(data.get("name", path.stem)), str(data.get("description", "")), checks, str(path)
    )


def _where(path: Path, lines: Mapping[str, int], key: str) -> dict:
    return {"file": str(path), "line": lines.get(key), "path": key}


def _expand_sweep(raw: Any, where: dict) -> list[dict]:
    if not isinstance(raw, Mapping):
        raise SpecError("each check must be a mapping", **where)
    unknown = set(raw) - CHECK_KEYS
    if unknown:
        raise SpecError(
            f"unknown check key '{sorted(unknown)[0]}'",
            hint="allowed keys: " + ", ".join(sorted(CHECK_KEYS)),
            **where,
        )
    sweep = raw.get("sweep")
    if sweep is None:
        return [dict(raw)]
    if not isinstance(raw.get("spec"), Mapping) or not isinstance(sweep.get("values"), list):
        raise SpecError("a sweep needs an inline spec and `values: [...]`", **where)
    out = []
    for value in sweep["values"]:
        check = copy.deepcopy(dict(raw))
        node = check["spec"]
        *parents, last = str(sweep.get("key", "")).split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
        check["name"] = f"{raw.get('name', 'check')} [{sweep.get('key')}={value}]"
        out.append(check)
    return out


RELATIONS = ("equal", "at_least", "at_most")


def _relation(value: Any, where: dict) -> str:
    if value not in RELATIONS:
        raise SpecError(f"relation must be one of {', '.join(RELATIONS)}, got {value!r}", **where)
    return value


def _check(raw: dict, path: Path, lines: Mapping[str, int], i: int, quick: bool) -> Check:
    where = _where(path, lines, f"checks[{i}]")
    for key in ("name", "spec", "quantity", "width", "samples"):
        if key not in raw:
            raise SpecError(f"check is missing required key '{key}'", **where)
    if quick:
        raw = {**raw, **(raw.get("quick") or {})}
    spec_raw = raw["spec"]
    if isinstance(spec_raw, str):
        spec = load_spec(path.parent / spec_raw)
    else:
        prefix = f"checks[{i}].spec"
        spec_lines = {k[len(prefix) + 1 :]: v for k, v in lines.items() if k.startswith(prefix)}
        spec_lines[""] = lines.get(prefix)
        spec = spec_from_dict(spec_raw, str(path), spec_lines)
    allowance = raw.get("allowance") or {}
    try:
        return Check(
            name=str(raw["name"]),
            spec=spec,
            quantity=str(raw["quantity"]),
            width=int(raw["width"]),
            samples=int(raw["samples"]),
            layer=int(raw.get("layer", -1)),
            inputs=dict(raw.get("inputs") or {}),
            confidence=float(raw.get("confidence", 0.99)),
            relative=float(allowance.get("relative", 0.0)),
            absolute=float(allowance.get("absolute", 0.0)),
            options=dict(raw.get("options") or {}),
            where=where,
            relation=_relation(raw.get("relation", "equal"), where),
        )
    except (TypeError, ValueError, AttributeError) as err:
        raise SpecError(f"malformed check: {err}", **where) from None
