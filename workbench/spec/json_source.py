"""JSON text -> (plain data, {spec path: line}), tracking the line of every key and item."""

from __future__ import annotations

import bisect
import json
import re

from workbench.errors import SpecError
from workbench.precision import exact_real
from workbench.spec.where import join_item, join_key

Lines = dict[str, int]
_WS = re.compile(r"[ \t\n\r]*")


class _LineScanner:
    """Walks already-valid JSON text and records where each key and item starts."""

    def __init__(self, text: str, file: str | None) -> None:
        self.text = text
        self.file = file
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.decoder = json.JSONDecoder()
        self.lines: Lines = {}

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def skip(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()

    def value(self, pos: int, path: str) -> int:
        """Scan the value starting at ``pos`` (after whitespace); return the end position."""
        pos = self.skip(pos)
        char = self.text[pos]
        if char == "{":
            return self.obj(pos + 1, path)
        if char == "[":
            return self.array(pos + 1, path)
        _, end = self.decoder.raw_decode(self.text, pos)
        return end

    def obj(self, pos: int, path: str) -> int:
        pos = self.skip(pos)
        if self.text[pos] == "}":
            return pos + 1
        seen: set[str] = set()
        while True:
            pos = self.skip(pos)
            key, end = json.decoder.scanstring(self.text, pos + 1)
            child = join_key(path, key)
            if key in seen:
                raise SpecError(
                    f"duplicate key '{key}'",
                    path=child,
                    file=self.file,
                    line=self.line(pos),
                    hint="remove one of the two entries",
                )
            seen.add(key)
            self.lines.setdefault(child, self.line(pos))
            pos = self.skip(self.skip(end) + 1)  # past the colon
            pos = self.skip(self.value(pos, child))
            if self.text[pos] == "}":
                return pos + 1
            pos += 1  # comma

    def array(self, pos: int, path: str) -> int:
        pos = self.skip(pos)
        if self.text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            pos = self.skip(pos)
            child = join_item(path, index)
            self.lines.setdefault(child, self.line(pos))
            pos = self.skip(self.value(pos, child))
            if self.text[pos] == "]":
                return pos + 1
            pos += 1
            index += 1


def parse_json(text: str, file: str | None = None) -> tuple[object, Lines]:
    """Parse JSON; syntax errors become SpecError with the decoder's line."""
    try:
        data = json.loads(text, parse_float=exact_real)
        scanner = _LineScanner(text, file)
        start = scanner.skip(0)
        scanner.lines[""] = scanner.line(start)
        scanner.value(start, "")
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"malformed JSON: {exc.msg} (column {exc.colno})",
            file=file,
            line=exc.lineno,
            hint="check commas, quotes and brackets near this line",
        ) from None
    except RecursionError:
        raise SpecError("JSON is nested too deeply", file=file) from None
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise SpecError(f"malformed JSON value: {exc}", file=file) from None
    return data, scanner.lines
