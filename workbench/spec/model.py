"""The Spec: frozen dataclasses, one per node kind, produced by the loader and the builder.

Every node records ``path`` (its spec path, e.g. ``layers[2].repeat.body[0]``) and ``line``
(1-based line in the source file, or None) so that later stages can report errors where the
user wrote the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.activations import Activation


@dataclass(frozen=True)
class Dense:
    width: int
    sigma_w2: float
    sigma_b2: float
    init: str = "gaussian"  # gaussian | orthogonal
    path: str = ""
    line: int | None = None
    kind: str = field(default="dense", init=False)


@dataclass(frozen=True)
class Conv:
    channels: int
    kernel: tuple[int, ...]  # one entry per spatial dimension
    sigma_w2: float
    sigma_b2: float
    # flattened kernel-tap weights summing to 1 (row-major)
    variance: tuple[float, ...] | None = None
    init: str = "gaussian"  # gaussian | orthogonal | delta_orthogonal
    path: str = ""
    line: int | None = None
    kind: str = field(default="conv", init=False)


@dataclass(frozen=True)
class Act:
    activation: Activation
    path: str = ""
    line: int | None = None
    kind: str = field(default="act", init=False)


@dataclass(frozen=True)
class BatchNorm:
    gamma: float = 1.0
    beta: float = 0.0
    path: str = ""
    line: int | None = None
    kind: str = field(default="bn", init=False)


@dataclass(frozen=True)
class Residual:
    body: tuple[Node, ...]
    scale: float = 1.0
    path: str = ""
    line: int | None = None
    kind: str = field(default="residual", init=False)


@dataclass(frozen=True)
class Pool:
    mode: str = "global_avg"
    path: str = ""
    line: int | None = None
    kind: str = field(default="pool", init=False)


@dataclass(frozen=True)
class Flatten:
    path: str = ""
    line: int | None = None
    kind: str = field(default="flatten", init=False)


@dataclass(frozen=True)
class Repeat:
    times: int
    body: tuple[Node, ...]
    path: str = ""
    line: int | None = None
    kind: str = field(default="repeat", init=False)


Node = Dense | Conv | Act | BatchNorm | Residual | Pool | Flatten | Repeat


@dataclass(frozen=True)
class Spec:
    name: str
    input_shape: tuple[int, ...]  # (C,), (C, L) or (C, H, W): channels first
    layers: tuple[Node, ...]
    defaults: dict = field(default_factory=dict, hash=False, compare=False)
    file: str | None = None  # source file, None for Python-built specs
