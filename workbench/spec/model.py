"""The Spec: a frozen record of a validated architecture. Its layers are node dataclasses
(``workbench.nodes``), each carrying its spec path and source line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Spec:
    name: str
    input_shape: tuple[int, ...]  # (C,), (C, L) or (C, H, W): channels first
    layers: tuple[Any, ...]  # workbench.nodes node dataclasses
    defaults: dict = field(default_factory=dict, hash=False, compare=False)
    file: str | None = None  # source file, None for Python-built specs
