"""Node kinds, one module each. ``NODE_KINDS`` maps a spec kind name to its module.

Every kind module provides:

- ``KIND``: its spec name; ``BARE``: whether it may be written as a bare string (``- flatten``);
  ``EXAMPLE``: a short spec snippet for hints; ``SCHEMA``: its keys (``spec.fields.Schema``).
- ``parse(value, where, ctx, in_shape) -> node``: validate the raw value and build the dataclass.
- ``output_shape(node, in_shape, where) -> tuple``: its shape rule, raising SpecError on mismatch.
"""

from __future__ import annotations

from types import ModuleType

from workbench.nodes import act, bn, conv, dense, flatten, pool, repeat, residual

NODE_KINDS: dict[str, ModuleType] = {
    m.KIND: m for m in (dense, conv, act, bn, residual, pool, flatten, repeat)
}

__all__ = ["NODE_KINDS"]
