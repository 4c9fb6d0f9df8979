"""Where a sweep's results live: one JSON file per finished cell under ``OUT/cells/``, named by
a hash of everything that determines the cell's result (its spec, settings, data, task), and
the sweep's description in ``OUT/sweep.json``.

One file per cell, written whole and renamed into place, because cells finish in any order on
any worker: a killed sweep leaves only complete files, a rerun of the same (or an overlapping)
grid finds each finished cell by its hash and skips it, and no store needs a lock or a
dependency. Cells that failed are recorded with their error and retried on the next run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

FORMAT = 1


def cell_key(identity: dict) -> str:
    """A short hash of the canonical JSON of what determines a cell's result."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class SweepStore:
    """The files of one sweep directory."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.cells = self.out / "cells"
        try:
            self.cells.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkbenchError(f"cannot create the sweep directory {self.out}: {exc}",
                                 hint="give --out a writable directory") from None  # fmt: skip

    def _path(self, key: str) -> Path:
        return self.cells / f"{key}.json"

    def record(self, key: str) -> dict | None:
        """The stored record of a cell (finished or failed), None if absent or unreadable."""
        try:
            record = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None  # absent, or unreadable: computed again and overwritten
        return record if record.get("format") == FORMAT else None

    def finished(self, key: str) -> dict | None:
        """The stored record of a cell that finished without error, else None."""
        record = self.record(key)
        return record if record is not None and "error" not in record else None

    def write(self, key: str, record: dict) -> None:
        _write_atomic(self._path(key), {"format": FORMAT, "key": key, **record})

    def write_description(self, description: dict) -> None:
        _write_atomic(self.out / "sweep.json", {"format": FORMAT, **description})

    def records(self) -> Iterator[dict]:
        for path in sorted(self.cells.glob("*.json")):
            try:
                yield json.loads(path.read_text())
            except (OSError, ValueError):
                continue


def _write_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers (and a resumed
    sweep) see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
