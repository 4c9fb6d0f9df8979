"""Typed field checkers and a tiny declarative schema shared by the node kinds.

A checker is ``check(value, where) -> converted value`` raising SpecError at ``where``.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from workbench.precision import ExactReal
from workbench.spec.where import Where

Checker = Callable[[Any, Where], Any]
_MISSING = object()
MAX_INT = 10**18  # sizes and counts above this are typos, and keep messages printable


def type_name(value: object) -> str:
    """A user-facing name for the type of a raw spec value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def show(value: object, limit: int = 40) -> str:
    """A short repr of a raw value for messages: nested and long values are cut while the
    repr is built (reprlib), so a value that aliases expand to billions of items costs no
    more than a small one."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 2, limit, limit, limit
    try:
        text = short.repr(value)
    except ValueError:  # an integer too long to print
        return "<a very long number>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(name: object, options: Sequence[str]) -> str | None:
    """The closest option to ``name`` (difflib), if any is close enough."""
    if not isinstance(name, str):
        return None
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    if not close:
        close = [o for o in options if o.lower() == name.lower()]
    return close[0] if close else None


def unknown_hint(name: object, options: Sequence[str], what: str) -> str:
    """'did you mean X?' plus the list of allowed names."""
    allowed = f"allowed {what}s: {', '.join(options)}"
    best = suggest(name, options)
    return f"did you mean '{best}'? {allowed}" if best else allowed


def is_int(value: object) -> bool:
    """True for integers proper (not bool, not float such as 3.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for int/float values (not bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def mapping(value: object, where: Where, hint: str | None = None) -> Mapping:
    """``value`` itself if it is a mapping, else a SpecError."""
    if not isinstance(value, Mapping):
        hint = hint or "write `key: value` pairs, e.g. `{width: 512}`"
        raise where.error(f"expected a mapping, got {type_name(value)} {show(value)}", hint)
    return value


def sequence(value: object, where: Where, hint: str | None = None, nonempty: bool = False) -> list:
    """``value`` as a list if it is a list (or tuple), else a SpecError."""
    if not isinstance(value, list | tuple):
        hint = hint or "write a list, e.g. `[1, 2]` or one `- item` per line"
        raise where.error(f"expected a list, got {type_name(value)} {show(value)}", hint)
    if nonempty and not value:
        raise where.error("the list is empty", hint or "give at least one item")
    return list(value)


def check_keys(
    raw: Mapping, where: Where, allowed: Sequence[str], required: Sequence[str] = ()
) -> None:
    """Reject keys that are not strings or not in ``allowed``; require ``required``."""
    for key in raw:
        if not isinstance(key, str):
            raise where.error(
                f"keys must be strings, got {type_name(key)} {show(key)}",
                f"allowed keys: {', '.join(allowed)}",
            )
        if key not in allowed:
            raise where.at(key).error(f"unknown key '{key}'", unknown_hint(key, allowed, "key"))
    for key in required:
        if key not in raw:
            raise where.error(f"missing required key '{key}'", f"add `{key}: ...` here")


def _type_hint(value: object, wanted: str) -> str:
    """How to fix a value of the wrong type."""
    if isinstance(value, bool):
        return f"true/false/yes/no are booleans in YAML; write {wanted}"
    if isinstance(value, str):
        return f"write {wanted} without quotes"
    return f"write {wanted}"


def positive_int(value: object, where: Where) -> int:
    """A positive integer (bool and floats such as 3.0 are rejected)."""
    if not is_int(value):
        if is_real(value):
            hint = "write a whole number without a decimal point"
        else:
            hint = _type_hint(value, "a whole number such as 3")
        got = f"{type_name(value)} {show(value)}"
        raise where.error(f"expected a positive integer, got {got}", hint)
    if value <= 0:
        raise where.error(f"expected a positive integer, got {show(value)}", "use a value >= 1")
    if value > MAX_INT:
        raise where.error(f"integer too large: {show(value)}", f"use a value <= {MAX_INT:.0e}")
    return int(value)


def real(value: object, where: Where) -> float:
    """A finite real number (bool is rejected)."""
    if not is_real(value):
        hint = None
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*", value):
            hint = "write it as a number, not text: remove the quotes"
        hint = hint or _type_hint(value, "a number such as 1.5")
        raise where.error(f"expected a number, got {type_name(value)} {show(value)}", hint)
    try:
        number = value if isinstance(value, ExactReal) else float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise where.error(f"expected a finite number, got {show(value)}", "use a finite value")
    if is_int(value):  # keep the exact integer for the precision contexts
        number = ExactReal(Fraction(value))
    return number


def positive_real(value: object, where: Where) -> float:
    """A finite number > 0."""
    number = real(value, where)
    if number <= 0:
        raise where.error(f"must be > 0, got {show(value)}", "use a positive value")
    return number


def nonnegative_real(value: object, where: Where) -> float:
    """A finite number >= 0."""
    number = real(value, where)
    if number < 0:
        raise where.error(f"must be >= 0, got {show(value)}", "use a value >= 0")
    return number


def text(value: object, where: Where) -> str:
    """A non-empty string of valid Unicode (no lone surrogates, which nothing can print)."""
    if not isinstance(value, str) or not value.strip():
        raise where.error(
            f"expected a non-empty string, got {type_name(value)} {show(value)}",
            "write some text, e.g. `my-net`",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise where.error(
            f"the text '{value.encode('utf-8', 'backslashreplace').decode()[:40]}' holds a "
            "lone surrogate (not a character)",
            "write plain characters (an escape such as \\ud800 alone is not one)",
        ) from None
    return value


def choice(*options: str) -> Checker:
    """A checker accepting one of ``options``."""

    def check(value: object, where: Where) -> str:
        if not isinstance(value, str) or value not in options:
            raise where.error(
                f"expected one of {', '.join(options)}, got {show(value)}",
                unknown_hint(value, options, "value"),
            )
        return value

    check.choices = options  # type: ignore[attr-defined]  # read by the kind catalogue
    return check


def int_or_int_list(value: object, where: Where) -> int | tuple[int, ...]:
    """A positive int or a non-empty list of positive ints."""
    if isinstance(value, list | tuple):
        items = sequence(value, where, nonempty=True)
        return tuple(positive_int(v, where.item(i)) for i, v in enumerate(items))
    return positive_int(value, where)


def real_list(value: object, where: Where) -> tuple[float, ...]:
    """A non-empty list of finite numbers >= 0."""
    items = sequence(value, where, nonempty=True)
    return tuple(nonnegative_real(v, where.item(i)) for i, v in enumerate(items))


@dataclass(frozen=True)
class Key:
    """One schema key: its checker, and its default (``required`` when there is none)."""

    check: Checker
    default: Any = _MISSING
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class Schema:
    """The keys of one mapping; ``read`` validates a raw mapping and fills in defaults."""

    keys: Mapping[str, Key]

    def read(self, raw: object, where: Where, hint: str | None = None) -> dict[str, Any]:
        raw = mapping(raw, where, hint)
        names = list(self.keys)
        check_keys(raw, where, names, [k for k in names if self.keys[k].required])
        out: dict[str, Any] = {}
        for name, key in self.keys.items():
            if name in raw:
                out[name] = key.check(raw[name], where.at(name))
            else:
                out[name] = key.default
        return out


def weight_variances(
    values: Mapping[str, Any], where: Where, defaults: Mapping[str, float]
) -> tuple[float, float]:
    """(sigma_w2, sigma_b2) from the layer, falling back to the spec ``defaults``."""
    found = []
    for name in ("sigma_w2", "sigma_b2"):
        value = values.get(name)
        if value is None:
            value = defaults.get(name)
        if value is None:
            raise where.error(
                f"{name} is not set for this layer",
                f"add `{name}: <value>` to this layer or to the top-level `defaults`",
            )
        found.append(value)
    return found[0], found[1]
