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

    def __hash__(self) -> int:
        """Hashed once: specs key the compile caches on every call, and a deep spec is a deep
        tuple of nodes."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.name, self.input_shape, self.layers, self.file))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict:
        """Pickled without the cached hash (string hashes differ between processes)."""
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}
