"""Where a piece of a spec came from: spec path, file and line, used to build SpecErrors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from workbench.errors import SpecError


@dataclass(frozen=True)
class Where:
    """A spec location. ``lines`` maps full spec paths to 1-based lines (None when unknown)."""

    path: str = ""
    line: int | None = None
    file: str | None = None
    lines: Mapping[str, int] | None = field(default=None, repr=False, compare=False)

    def _child(self, path: str) -> Where:
        line = self.lines.get(path, self.line) if self.lines else self.line
        return Where(path, line, self.file, self.lines)

    def at(self, key: object) -> Where:
        """The location of mapping key ``key`` below this one."""
        return self._child(join_key(self.path, key))

    def item(self, index: int) -> Where:
        """The location of sequence item ``index`` below this one."""
        return self._child(join_item(self.path, index))

    def error(self, message: str, hint: str | None = None) -> SpecError:
        """A SpecError pointing here (returned, so callers write ``raise where.error(...)``)."""
        return SpecError(message, path=self.path, file=self.file, line=self.line, hint=hint)


def join_key(path: str, key: object) -> str:
    """The spec path of ``key`` inside the mapping at ``path``."""
    return f"{path}.{key}" if path else str(key)


def join_item(path: str, index: int) -> str:
    """The spec path of item ``index`` inside the sequence at ``path``."""
    return f"{path}[{index}]"
