"""Spec syntax: locations, field checkers, YAML/JSON sources, the Spec record and the raw-layer
builder helpers. Loading a spec into nodes is ``workbench.compile`` (``workbench.load_spec``)."""

from workbench.spec.builder import act, bn, conv, dense, flatten, pool, repeat, residual
from workbench.spec.model import Spec

__all__ = ["Spec", "act", "bn", "conv", "dense", "flatten", "pool", "repeat", "residual"]
