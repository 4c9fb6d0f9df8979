"""Node kinds, one module each (see ``nodes.base`` for what a kind module provides).

``REGISTRY`` maps a spec kind name to its module; ``rule(node, family)`` finds a kind's rule.
"""

from __future__ import annotations

from workbench.nodes import act, bn, conv, dense, flatten, layernorm, pool, repeat, residual
from workbench.nodes.act import Act
from workbench.nodes.base import REGISTRY, NodeBase, register, rule
from workbench.nodes.bn import BatchNorm
from workbench.nodes.conv import Conv
from workbench.nodes.dense import Dense
from workbench.nodes.flatten import Flatten
from workbench.nodes.pool import Pool
from workbench.nodes.repeat import Repeat
from workbench.nodes.residual import Residual

register(dense, conv, act, bn, layernorm, residual, pool, flatten, repeat)

__all__ = [
    "REGISTRY",
    "Act",
    "BatchNorm",
    "Conv",
    "Dense",
    "Flatten",
    "NodeBase",
    "Pool",
    "Repeat",
    "Residual",
    "rule",
]
