"""Typed errors. Every user-facing failure is one of these; the CLI prints them and exits 2."""

from __future__ import annotations

MAX_MESSAGE = 400  # characters of a message or hint; a longer one keeps its two ends


def brief(text: str | None) -> str | None:
    """``text`` cut to MAX_MESSAGE characters in the middle (a 10,000-character name quoted
    in a message would otherwise fill the screen)."""
    if text is None or len(text) <= MAX_MESSAGE:
        return text
    cut = len(text) - MAX_MESSAGE + 40
    return f"{text[:240]} …({cut:,} characters left out)… {text[-(MAX_MESSAGE - 280) :]}"


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message, hint = brief(message), brief(hint)
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(WorkbenchError):
    """A spec file or builder call is malformed.

    Carries where: ``file`` (None for Python-built specs), 1-based ``line`` (None if unknown)
    and ``path``, the spec path such as ``layers[2].repeat.body[0].dense.width``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        text = f"{where}: {self.message}"
        return text if not self.hint else f"{text}\n  hint: {self.hint}"


class ExpressionError(WorkbenchError):
    """An activation expression is not in the whitelisted grammar."""


class TheoryError(WorkbenchError):
    """A mean-field quantity cannot be computed for this input (and the message says why)."""


class UnsupportedError(WorkbenchError):
    """A node kind does not (yet) support the requested order parameter or analysis."""
