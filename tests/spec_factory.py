"""What every test builds specs from: the repository's paths and one spec-building helper
(``make_spec``; also the ``make_spec`` fixture of conftest.py)."""

from __future__ import annotations

from pathlib import Path

from workbench.compile import spec_from_dict
from workbench.spec.model import Spec

TESTS = Path(__file__).parent
ROOT = TESTS.parent
SPEC_FILES = TESTS / "specs"  # the test specs (YAML/JSON)
FLAGSHIP = ROOT / "derivations" / "tanh-fc-critical.yaml"


def make_spec(
    layers: list, shape=(8,), sw2: float = 1.5, sb2: float = 0.05, name: str = "t"
) -> Spec:
    """A spec from its layer list, input shape and default σ_w², σ_b² (as a user writes it)."""
    return spec_from_dict({"name": name, "input": {"shape": list(shape)},
                           "defaults": {"sigma_w2": sw2, "sigma_b2": sb2},
                           "layers": layers})  # fmt: skip
