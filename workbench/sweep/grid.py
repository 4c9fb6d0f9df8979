"""A sweep's grid: axes named by spec paths (``defaults.sigma_w2``, ``layers[1].repeat.times``)
or training settings (``lr``, ``steps``, ...), their values, and the cells they span."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

# Training settings a grid may sweep beside spec paths, and whether each takes whole numbers.
SETTINGS = {"lr": False, "momentum": False, "steps": True, "width": True, "batch_size": True,
            "seed": True}  # fmt: skip
SHORTHANDS = {"sigma_w2": "defaults.sigma_w2", "sigma_b2": "defaults.sigma_b2"}
_WHOLE_KEYS = ("times", "width", "channels", "kernel", "stride")
_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


class GridError(WorkbenchError):
    """A --grid argument that names no spec path or setting, or whose values do not fit it."""


@dataclass(frozen=True)
class Axis:
    """One grid axis: ``key`` as the user wrote it, ``target`` the spec path or setting it sets."""

    key: str
    target: str
    values: tuple[float | int, ...]
    paths: tuple[str, ...] = ()  # the spec paths it sets (several for ``gamma``)

    @property
    def is_setting(self) -> bool:
        return self.target in SETTINGS


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its index along each axis and the value each axis takes."""

    index: tuple[int, ...]
    values: tuple[tuple[str, float | int], ...]  # (axis key, value)

    def label(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.values)


def parse_path(path: str) -> list[str | int]:
    """``layers[1].repeat.times`` → ['layers', 1, 'repeat', 'times']."""
    tokens: list[str | int] = []
    at = 0
    while at < len(path):
        match = _TOKEN.match(path, at)
        if match is None or (at == 0 and path.startswith(".")):
            raise GridError(f"cannot read the spec path {path!r} at character {at + 1}",
                            hint="write keys with dots and items in brackets: "
                            "layers[1].repeat.times")  # fmt: skip
        tokens.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        at = match.end()
    if not tokens:
        raise GridError("an empty spec path", hint="e.g. defaults.sigma_w2")
    return tokens


def _walk(data: Any, tokens: Sequence[str | int], path: str) -> tuple[Any, str | int]:
    """The container holding the last token, checked to exist along the way."""
    node = data
    for depth, token in enumerate(tokens[:-1]):
        node = _child(node, token, tokens[: depth + 1], path)
    last = tokens[-1]
    if isinstance(last, int):
        _child(node, last, tokens, path)
    elif not isinstance(node, Mapping):
        raise GridError(f"{path}: {_show(tokens[:-1])} is not a mapping",
                        hint="a grid key ends at a number in the spec")  # fmt: skip
    return node, last


def _child(node: Any, token: str | int, upto: Sequence[str | int], path: str) -> Any:
    if isinstance(token, int):
        if not isinstance(node, list) or token >= len(node):
            raise GridError(f"{path}: the spec has no item {_show(upto)}",
                            hint="count list items from 0")  # fmt: skip
        return node[token]
    if not isinstance(node, Mapping) or token not in node:
        raise GridError(f"{path}: the spec has no key {_show(upto)}",
                        hint="grid keys are spec paths such as layers[1].repeat.times")  # fmt: skip
    return node[token]


def _show(tokens: Sequence[str | int]) -> str:
    text = ""
    for t in tokens:
        text += f"[{t}]" if isinstance(t, int) else (f".{t}" if text else t)
    return text or "(the spec)"


def _layer_paths(data: Any, kind: str, path: str = "") -> list[tuple[str, Any]]:
    """(spec path, value) of every ``{kind: value}`` in spec data, bodies included; a bare
    ``kind`` string as a list item is returned with the value None."""
    found: list[tuple[str, Any]] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == kind:
                found.append((sub, value))
            found += _layer_paths(value, kind, sub)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            if value == kind:
                found.append((f"{path}[{i}]", None))
            found += _layer_paths(value, kind, f"{path}[{i}]")
    return found


def repeat_paths(data: Any) -> list[str]:
    """Spec paths of every repeat block's ``times`` in spec data."""
    return [f"{p}.times" for p, value in _layer_paths(data, "repeat")
            if isinstance(value, Mapping) and "times" in value]  # fmt: skip


def bn_gamma_paths(data: Any) -> list[str]:
    """The spec path of every batch norm's ``gamma`` (present or not) in spec data."""
    found = []
    for path, value in _layer_paths(data, "bn"):
        if not isinstance(value, Mapping):
            raise GridError(f"{path} is a bare `bn`: its gamma has no place to go",
                            hint="write `bn: {gamma: 1.0}` to sweep gamma")  # fmt: skip
        found.append(f"{path}.gamma")
    return found


def resolve_target(key: str, data: Any) -> tuple[str, tuple[str, ...]]:
    """What a grid key sets: a setting, or spec paths (``depth``: the spec's only repeat
    block; ``gamma``: every batch norm's gamma, as mean_field_batchnorm varies it)."""
    if key in SETTINGS:
        return key, ()
    if key in SHORTHANDS:
        return SHORTHANDS[key], (SHORTHANDS[key],)
    if key == "depth":
        paths = repeat_paths(data)
        if len(paths) != 1:
            raise GridError(
                f"'depth' needs exactly one repeat block, the spec has {len(paths)}",
                hint="name the block: " + (", ".join(paths) or "add a repeat block"),
            )
        return paths[0], (paths[0],)
    if key == "gamma":
        paths = bn_gamma_paths(data)
        if not paths:
            raise GridError("'gamma' sets every batch norm's gamma, and the spec has none",
                            hint="add a bn layer, or name a spec path")  # fmt: skip
        return "every bn's gamma", tuple(paths)
    _walk(data, parse_path(key), key)
    return key, (key,)


def _whole(target: str, paths: tuple[str, ...]) -> bool:
    """Whether an axis takes whole numbers: a count setting, or a spec key that is one."""
    if target in SETTINGS:
        return SETTINGS[target]
    keys = [t for t in parse_path(paths[0]) if isinstance(t, str)]
    return keys[-1] in _WHOLE_KEYS


def parse_values(text: str, key: str) -> tuple[float, ...]:
    """``a:b:n`` (n evenly spaced), ``a:b:n:log`` (n geometrically spaced) or ``v1,v2,...``."""
    hint = "write a:b:n, a:b:n:log or a list v1,v2,... (e.g. sigma_w2=0.5:4:8)"
    parts = text.split(":")
    try:
        if len(parts) == 1:
            values = [float(v) for v in text.split(",")]
        elif len(parts) in (3, 4):
            a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
            log = len(parts) == 4
            if log and parts[3] != "log":
                raise ValueError
            if n < 1 or (log and (a <= 0 or b <= 0)):
                raise GridError(f"{key}={text}: n must be >= 1 and a log grid's ends positive",
                                hint=hint)  # fmt: skip
            values = list(np.geomspace(a, b, n) if log else np.linspace(a, b, n))
        else:
            raise ValueError
    except ValueError:
        raise GridError(f"cannot read the values of {key}={text}", hint=hint) from None
    if not all(math.isfinite(v) for v in values):
        raise GridError(f"{key}={text}: values must be finite numbers", hint=hint)
    return tuple(float(v) for v in values)


def parse_axis(text: str, data: Any) -> Axis:
    """One ``--grid KEY=VALUES`` argument, checked against the spec data."""
    key, sep, rest = text.partition("=")
    if not sep or not key.strip():
        raise GridError(f"cannot read --grid {text!r}", hint="write KEY=a:b:n, e.g. depth=4:64:7")
    key = key.strip()
    target, paths = resolve_target(key, data)
    values: tuple[float | int, ...] = parse_values(rest.strip(), key)
    if _whole(target, paths):
        off = [v for v in values if abs(v - round(v)) > 1e-9 * max(1.0, abs(v))]
        if off:
            raise GridError(
                f"{key}={rest} takes whole numbers, but gives {off[0]:.6g}",
                hint="choose n so that the step is whole, or list the values",
            )
        values = tuple(int(round(v)) for v in values)
    if len(set(values)) != len(values):
        raise GridError(f"{key}={rest} repeats a value", hint="each value once")
    return Axis(key, target, values, paths)


def check_axes(axes: Sequence[Axis]) -> None:
    targets = [t for a in axes for t in (a.paths or (a.target,))]
    for t in targets:
        if targets.count(t) > 1:
            raise GridError(f"two grid axes set {t}", hint="give each spec path one axis")


def cells(axes: Sequence[Axis]) -> Iterator[Cell]:
    """Every combination of the axes' values, the last axis fastest."""
    ranges = [range(len(a.values)) for a in axes]
    for index in itertools.product(*ranges):
        yield Cell(index, tuple((a.key, a.values[i]) for a, i in zip(axes, index)))


def apply_cell(data: Any, axes: Sequence[Axis], cell: Cell) -> tuple[Any, dict[str, Any]]:
    """A copy of the spec data with the cell's spec-path values set, and its settings."""
    data = unshared(data)
    settings: dict[str, Any] = {}
    for axis, (_, value) in zip(axes, cell.values):
        if axis.is_setting:
            settings[axis.target] = value
            continue
        set_paths(data, axis.paths, value)
    return data, settings


def set_paths(data: Any, paths: Sequence[str], value: Any) -> None:
    """Set every spec path of ``paths`` in ``data`` (in place) to ``value``."""
    for path in paths:
        node, last = _walk(data, parse_path(path), path)
        node[last] = value


def unshared(data: Any) -> Any:
    """A copy in which no two places share an object (YAML aliases do, and deepcopy keeps
    them shared): setting one spec path must not set another."""
    if isinstance(data, Mapping):
        return {k: unshared(v) for k, v in data.items()}
    if isinstance(data, list):
        return [unshared(v) for v in data]
    return data
