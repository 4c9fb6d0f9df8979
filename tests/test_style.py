"""The code base stays ruff-clean (lint and format), so CI catches style drift too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUFF = Path(sys.executable).parent / "ruff"  # installed by the [test] extra


@pytest.mark.parametrize("argv", [["check", "."], ["format", "--check", "."]])
def test_ruff(argv):
    proc = subprocess.run([RUFF, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
