"""Architecture specs: loading (YAML/JSON/Python builder), validation and the Spec dataclasses."""

from workbench.spec.builder import (
    act,
    bn,
    build_spec,
    conv,
    dense,
    flatten,
    pool,
    repeat,
    residual,
)
from workbench.spec.loader import load_spec, spec_from_dict, spec_from_text
from workbench.spec.model import (
    Act,
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    Node,
    Pool,
    Repeat,
    Residual,
    Spec,
)

__all__ = [
    "Act",
    "BatchNorm",
    "Conv",
    "Dense",
    "Flatten",
    "Node",
    "Pool",
    "Repeat",
    "Residual",
    "Spec",
    "act",
    "bn",
    "build_spec",
    "conv",
    "dense",
    "flatten",
    "load_spec",
    "pool",
    "repeat",
    "residual",
    "spec_from_dict",
    "spec_from_text",
]
