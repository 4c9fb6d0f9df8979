"""Load specs from files, text or plain data (every input goes through ``spec_from_dict``):
the spec's syntax (``workbench.spec``) read into node dataclasses by the node registry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench.errors import SpecError
from workbench.nodes.base import ParseContext, parse_layers
from workbench.spec import fields
from workbench.spec.json_source import parse_json
from workbench.spec.model import Spec
from workbench.spec.where import Where
from workbench.spec.yaml_source import parse_yaml

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
TOP_KEYS = ("name", "input", "defaults", "layers")
_TOP_REQUIRED = {
    "name": "add `name: my-net`",
    "input": "add `input: {shape: [784]}` ([C], [C, L] or [C, H, W])",
    "layers": "add `layers:` with a list of layers",
}
_INPUT = fields.Schema({"shape": fields.Key(lambda v, w: v, doc="[C], [C, L] or [C, H, W]")})
_DEFAULTS = fields.Schema(
    {
        "sigma_w2": fields.Key(fields.positive_real, None, "default weight variance"),
        "sigma_b2": fields.Key(fields.nonnegative_real, None, "default bias variance"),
    }
)


MAX_SPEC_BYTES = 10_000_000


def load_spec(path: str | Path) -> Spec:
    """Load a spec file; the format follows the extension (.yaml, .yml, .json)."""
    data, lines = read_spec_data(path)
    return spec_from_dict(data, file=str(path), lines=lines)


def read_spec_data(path: str | Path) -> tuple[object, dict[str, int]]:
    """A spec file's plain data and the source line of each spec path, before validation
    (a sweep edits the data per cell, then validates it with ``spec_from_dict``)."""
    file = str(path)
    fmt = FORMATS.get(Path(file).suffix.lower())
    if fmt is None:
        raise SpecError(
            f"unknown spec file extension '{Path(file).suffix}'",
            file=file,
            hint="name the file *.yaml, *.yml or *.json",
        )
    try:
        if not Path(file).exists():
            raise FileNotFoundError(file)
        if not Path(file).is_file():  # a FIFO would block, a device never end
            raise SpecError("not a regular file", file=file, hint="give a .yaml or .json file")
        if Path(file).stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"the spec file is over {MAX_SPEC_BYTES // 1_000_000} MB", file=file,
                            hint="a spec is a short text; use repeat blocks")  # fmt: skip
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("spec file not found", file=file, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file: {exc}", file=file) from None
    return parse_yaml(text, file) if fmt == "yaml" else parse_json(text, file)


def spec_from_text(text: str, file: str | None = None, fmt: str = "yaml") -> Spec:
    """Parse spec text in ``fmt`` ("yaml" or "json")."""
    if fmt == "yaml":
        data, lines = parse_yaml(text, file)
    elif fmt == "json":
        data, lines = parse_json(text, file)
    else:
        raise SpecError(f"unknown spec format '{fmt}'", file=file, hint="use 'yaml' or 'json'")
    return spec_from_dict(data, file=file, lines=lines)


def _input_shape(raw: object, where: Where) -> tuple[int, ...]:
    shape_at = where.at("shape")
    values = _INPUT.read(raw, where, hint="write `input: {shape: [784]}`")
    items = fields.sequence(values["shape"], shape_at, hint="write `shape: [C]`, `[C, L]`, ...")
    if not 1 <= len(items) <= 3:
        raise shape_at.error(
            f"input shape must have 1 to 3 dims, got {len(items)}",
            "use [C], [C, L] or [C, H, W] (channels first)",
        )
    return tuple(fields.positive_int(v, shape_at.item(i)) for i, v in enumerate(items))


def spec_from_dict(
    data: object, file: str | None = None, lines: Mapping[str, int] | None = None
) -> Spec:
    """Validate plain spec data (as read from YAML/JSON or built in Python) into a Spec.

    ``lines`` maps spec paths (``layers[2].dense.width``) to 1-based source lines.
    """
    try:
        return _spec_from_dict(data, file, lines)
    except RecursionError:
        raise SpecError(
            "the spec is nested too deeply",
            file=file,
            hint="nest fewer repeat/residual blocks (a repeat's `times` makes depth)",
        ) from None


def _spec_from_dict(data: object, file: str | None, lines: Mapping[str, int] | None) -> Spec:
    root = Where("", (lines or {}).get(""), file, lines)
    if not isinstance(data, Mapping):
        raise root.error(
            f"a spec must be a mapping with name, input and layers, got {fields.type_name(data)}",
            "start the file with `name: ...`, `input: {shape: [...]}` and `layers: [...]`",
        )
    fields.check_keys(data, root, TOP_KEYS)
    for key, hint in _TOP_REQUIRED.items():
        if key not in data:
            raise root.error(f"missing required key '{key}'", hint)
    name = fields.text(data["name"], root.at("name"))
    input_shape = _input_shape(data["input"], root.at("input"))
    defaults_raw = data.get("defaults")
    defaults = _DEFAULTS.read({} if defaults_raw is None else defaults_raw, root.at("defaults"))
    defaults = {k: v for k, v in defaults.items() if v is not None}
    layers_at = root.at("layers")
    items = fields.sequence(data["layers"], layers_at, hint="`layers:` is a list of layers")
    if not items:
        raise layers_at.error("`layers` is empty", "add at least one layer")
    layers, _ = parse_layers(items, layers_at, ParseContext(defaults), input_shape)
    return Spec(name, input_shape, layers, defaults=defaults, file=file)


def build_spec(
    name: str,
    input_shape: Sequence[int],
    layers: Iterable[Any],
    defaults: Mapping[str, float] | None = None,
) -> Spec:
    """Validate and build a Spec from Python values (``workbench.spec.builder`` makes the raw
    layers); raises SpecError like the file loader."""
    shape = list(input_shape) if isinstance(input_shape, tuple) else input_shape
    data: dict[str, Any] = {"name": name, "input": {"shape": shape}, "layers": list(layers)}
    if defaults is not None:
        data["defaults"] = dict(defaults) if isinstance(defaults, Mapping) else defaults
    return spec_from_dict(data)
