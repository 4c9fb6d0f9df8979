"""The spec language's node kinds as data, read from the kind modules' schemas (``workbench
kinds`` prints it; the README's table is checked against it, so the docs cannot drift)."""

from __future__ import annotations

from typing import Any

from workbench.nodes.base import REGISTRY

_MISSING_TEXT = "required"


def describe_kind(kind: str) -> dict[str, Any]:
    """One kind: what it does, an example, whether the bare name is allowed, and its keys
    (name, default or "required", allowed values, meaning)."""
    module = REGISTRY[kind]
    schema = getattr(module, "SCHEMA", None)
    keys = dict(schema.keys) if schema is not None else {}
    if hasattr(module, "VALUE"):  # kinds whose value may be a scalar (pool: global_avg)
        keys = {"(value)": module.VALUE, **keys}
    return {
        "kind": kind,
        "summary": (module.__doc__ or "").strip().splitlines()[0],
        "example": module.EXAMPLE,
        "bare": bool(getattr(module, "BARE", False)),
        "keys": [
            {
                "name": name,
                "default": _default(name, key),
                "choices": list(getattr(key.check, "choices", ())),
                "doc": key.doc,
            }
            for name, key in keys.items()
        ],
    }


def describe_kinds() -> list[dict[str, Any]]:
    """Every registered kind, in registration order."""
    return [describe_kind(kind) for kind in REGISTRY]


def _default(name: str, key: Any) -> Any:
    if key.required:
        return _MISSING_TEXT
    if key.default is None and name in ("sigma_w2", "sigma_b2"):
        return f"defaults.{name}"
    return key.default


def markdown_table() -> str:
    """The README's table of node kinds and keys (tests/test_readme.py keeps them equal)."""
    lines = ["| kind | key | default | meaning |", "|---|---|---|---|"]
    for kind in describe_kinds():
        bare = " (bare name allowed)" if kind["bare"] else ""
        example = f"e.g. `{kind['example']}`{bare}"
        lines.append(f"| **{kind['kind']}** | | | {kind['summary']} {example} |")
        for key in kind["keys"]:
            choices = f" One of: {', '.join(key['choices'])}." if key["choices"] else ""
            lines.append(f"| | `{key['name']}` | {key['default']} | {key['doc']}.{choices} |")
    return "\n".join(lines) + "\n"
