"""YAML text -> (plain data, {spec path: line}) with the safe loader only."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import yaml

from workbench.errors import SpecError
from workbench.precision import exact_real
from workbench.spec.where import join_item, join_key

Lines = dict[str, int]


DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
DECIMAL_REAL = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
SPECIAL_REAL = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


class _NumberError(ValueError):
    """A plain scalar YAML 1.1 reads as a number that is not a plain decimal one."""

    def __init__(self, message: str, line: int | None, hint: str) -> None:
        super().__init__(message)
        self.message, self.line, self.hint = message, line, hint


def _not_plain(text: str, read: Callable[[], object], what: str,
               node: yaml.ScalarNode) -> _NumberError:  # fmt: skip
    """The refusal of a non-decimal number, naming what YAML 1.1 would read (``read()``), or
    just refusing where YAML 1.1 cannot read it either (an explicit ``!!int _``)."""
    try:
        value = read()
    except (ValueError, IndexError, TypeError, OverflowError):
        return _NumberError(f"'{text}' is not a number (tagged as {what})",
                            _line(node.start_mark), "write a plain decimal number")  # fmt: skip
    return _NumberError(
        f"'{text}' is not a plain decimal {what} (YAML 1.1 would read it as {value})",
        _line(node.start_mark),
        f"write {value} if that is what you mean, or quote it if it is text",
    )


class _ExactLoader(yaml.SafeLoader):
    """The safe loader with plain decimal numbers only, keeping the decimal text of every float
    (``precision.ExactReal``). YAML 1.1 also reads 0x10 as 16, 010 as 8, 0b101 as 5, 1_000 as
    1000 and 1:30 as 90 (base 60): those are refused with the value YAML 1.1 would give, and
    YAML 1.2's 1e-3 (no decimal point) is a number, not text."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node)
        if not DECIMAL_INT.fullmatch(text):
            raise _not_plain(text, lambda: super(_ExactLoader, self).construct_yaml_int(node),
                             "integer", node)  # fmt: skip
        return int(text)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        text = self.construct_scalar(node)
        if SPECIAL_REAL.fullmatch(text):
            return super().construct_yaml_float(node)
        if not DECIMAL_REAL.fullmatch(text):
            raise _not_plain(text, lambda: super(_ExactLoader, self).construct_yaml_float(node),
                             "number", node)  # fmt: skip
        value = exact_real(text)
        if not math.isfinite(value) or (
            value == 0 and any(c in "123456789" for c in text.split("e")[0].split("E")[0])
        ):
            raise _NumberError(
                f"{text} is outside the float64 range (it would become {value})",
                _line(node.start_mark),
                "use a value between 1e-300 and 1e300 in magnitude",
            )  # fmt: skip
        return value


_ExactLoader.add_constructor("tag:yaml.org,2002:int", _ExactLoader.construct_yaml_int)
_ExactLoader.add_constructor("tag:yaml.org,2002:float", _ExactLoader.construct_yaml_float)
_ExactLoader.add_implicit_resolver(  # YAML 1.2 reals YAML 1.1 reads as text: 1e-3, 1.0e400
    "tag:yaml.org,2002:float",
    re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+\Z"),
    list("-+.0123456789"),
)


def _line(mark: yaml.Mark | None) -> int | None:
    return None if mark is None else mark.line + 1


def _error(exc: yaml.YAMLError, text: str, file: str | None) -> SpecError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = _line(mark)
    if isinstance(exc, yaml.reader.ReaderError):  # a bad character: no mark, only a position
        line = text.count("\n", 0, exc.position) + 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    message = f"malformed YAML: {problem}" + (f" ({context})" if context else "")
    hint = "check indentation, colons and brackets near this line"
    if "could not determine a constructor" in str(exc):
        message = f"YAML tag not allowed (specs are loaded safely): {problem}"
        hint = "remove the `!...` tag and write plain values"
    return SpecError(message, file=file, line=line, hint=hint)


MAX_VALUES = 100_000  # a spec's values once its aliases are expanded (a 10,000-layer repeat is 1)


def _check_expansion(root: yaml.Node, file: str | None) -> None:
    """Refuse a document whose aliases expand it past MAX_VALUES values (an "alias bomb":
    ten aliases of ten aliases … of one list), counted over the node graph without expanding
    it, before anything walks the expanded values."""
    size: dict[int, int] = {}

    def count(node: yaml.Node) -> int:
        if id(node) not in size:
            size[id(node)] = 0  # _record has refused cycles already
            if isinstance(node, yaml.SequenceNode):
                total = 1 + sum(count(item) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                total = 1 + sum(count(k) + count(v) for k, v in node.value)
            else:
                total = 1
            size[id(node)] = min(total, MAX_VALUES + 1)
        return size[id(node)]

    if count(root) > MAX_VALUES:
        raise SpecError(
            f"the YAML expands to more than {MAX_VALUES:,} values through its aliases (*name)",
            file=file,
            line=_line(root.start_mark),
            hint="write repeated layers as `repeat: {times: N, body: [...]}` instead of aliases",
        )


def _record(
    node: yaml.Node, path: str, lines: Lines, stack: set[int], done: set[int], file: str | None
) -> None:
    """Record the line of every mapping key and sequence item below ``node``.

    Aliased nodes are recorded once (at their anchor), which keeps this linear in the text.
    """
    if id(node) in stack:
        raise SpecError(
            "recursive YAML alias",
            path=path,
            file=file,
            line=_line(node.start_mark),
            hint="an anchor (&name) may not be used inside itself",
        )
    if isinstance(node, yaml.ScalarNode) or id(node) in done:
        return
    stack.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = join_item(path, index)
            lines.setdefault(child, _line(item.start_mark))
            _record(item, child, lines, stack, done, file)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if name in seen and name != "<<":
                raise SpecError(
                    f"duplicate key '{name}'",
                    path=join_key(path, name),
                    file=file,
                    line=_line(key.start_mark),
                    hint="remove one of the two entries",
                )
            seen.add(name)
            child = join_key(path, name)
            lines.setdefault(child, _line(key.start_mark))
            _record(value, child, lines, stack, done, file)
    stack.discard(id(node))
    done.add(id(node))


def parse_yaml(text: str, file: str | None = None) -> tuple[object, Lines]:
    """Parse one YAML document safely; errors become SpecError with the parser's line."""
    loader = None
    try:
        loader = _ExactLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: Lines = {"": _line(node.start_mark) or 1}
        _record(node, "", lines, set(), set(), file)
        _check_expansion(node, file)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _error(exc, text, file) from None
    except _NumberError as exc:
        raise SpecError(exc.message, file=file, line=exc.line, hint=exc.hint) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an impossible timestamp
        raise SpecError(f"malformed YAML value: {exc}", file=file) from None
    except RecursionError:
        raise SpecError("YAML is nested too deeply", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines
