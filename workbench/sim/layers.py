"""Torch layers for every node kind, batched over an ensemble of independent networks.

Tensors carry a leading ensemble axis: (E, B, C) for flat features and (E, B, C, *S) for
spatial ones (channels first). Each member has its own weights, so one forward pass simulates
E networks; members never mix. Weight layers record their output (pre-activations) on a tape
when one is attached, which is how the probes see every layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.nodes.base import NodeBase, module_of, rule

BN_EPS = 1e-12  # the mean-field batch norm has no ε; this only guards a zero batch variance


@dataclass
class Build:
    """What every layer needs to create its parameters."""

    ensemble: int
    generator: torch.Generator
    dtype: torch.dtype
    device: torch.device
    width: int | None = None  # overrides dense widths / conv channels, except the readout's
    readout: NodeBase | None = None  # the last weight layer of the spec
    bn_statistics: str = "batch"  # batch | fixed: batch norm's statistics in the graph or not

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=self.dtype, device=self.device)

    def size(self, node: NodeBase, declared: int) -> int:
        return declared if self.width is None or node is self.readout else self.width


@dataclass
class Tape:
    """Records (label, kind, tensor) of every layer's output during one forward pass (a
    residual block's after its body's)."""

    entries: list[tuple[str, str, torch.Tensor]] = field(default_factory=list)


class Tapped(nn.Module):
    """A layer whose output can be recorded under ``label``."""

    def __init__(self, label: str, kind: str) -> None:
        super().__init__()
        self.label, self.kind = label, kind
        self.tape: Tape | None = None

    def _record(self, out: torch.Tensor) -> torch.Tensor:
        if self.tape is not None:
            self.tape.entries.append((self.label, self.kind, out))
        return out


class DenseLayer(Tapped):
    """h = W x + b for each member: W (E, out, in), b (E, out); ``ntk_scale`` gives, per
    parameter, the factor s with θ = √s ω in the NTK parameterisation."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, ntk_scale: dict,
                 label: str) -> None:  # fmt: skip
        super().__init__(label, "dense")
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.ntk_scale = ntk_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2)))


class ConvLayer(Tapped):
    """Circular-padded convolution with kernels (E, out, in, *k) and a stride; the ensemble
    rides in grouped channels."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, ntk_scale: dict,
                 label: str, stride: int = 1) -> None:  # fmt: skip
        super().__init__(label, "conv")
        self.stride = stride
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.ntk_scale = ntk_scale
        kernel = weight.shape[3:]
        self.padding: list[int] = []
        for k in reversed(kernel):
            self.padding += [(k - 1) // 2, k - 1 - (k - 1) // 2]
        self.conv: Callable = (None, nn.functional.conv1d, nn.functional.conv2d)[len(kernel)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e, b, c, *spatial = x.shape
        stacked = x.transpose(0, 1).reshape(b, e * c, *spatial)
        padded = nn.functional.pad(stacked, self.padding, mode="circular")
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        out = self.conv(padded, weight, self.bias.reshape(-1), groups=e, stride=self.stride)
        return self._record(out.reshape(b, e, -1, *out.shape[2:]).transpose(0, 1))


class PointwiseLayer(Tapped):
    """y = φ(x) elementwise."""

    def __init__(self, phi: Callable[[torch.Tensor], torch.Tensor], label: str) -> None:
        super().__init__(label, "act")
        self.phi = phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(self.phi(x))


class BatchNormLayer(Tapped):
    """γ (x − mean) / std + β with batch statistics per member and channel (mean over the
    batch and spatial axes), as in mean_field_batchnorm §3; no running averages. ``fixed``:
    the statistics are detached, so gradients treat them as constants."""

    def __init__(self, gamma: float, beta: float, label: str, fixed: bool = False) -> None:
        super().__init__(label, "bn")
        self.gamma, self.beta, self.fixed = gamma, beta, fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = (1, *range(3, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        var = x.var(dim=axes, keepdim=True, unbiased=False)
        if self.fixed:  # the statistics are constants: no gradient flows through them
            mean, var = mean.detach(), var.detach()
        return self._record(self.gamma * (x - mean) / (var + BN_EPS).sqrt() + self.beta)


class LayerNormLayer(Tapped):
    """γ (x − mean)/std + β over the channels of each input (at every pixel)."""

    def __init__(self, gamma: float, beta: float, eps: float, label: str) -> None:
        super().__init__(label, "layernorm")
        self.gamma, self.beta, self.eps = gamma, beta, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=2, keepdim=True)
        var = x.var(dim=2, keepdim=True, unbiased=False)
        return self._record(self.gamma * (x - mean) / (var + self.eps).sqrt() + self.beta)


class ResidualLayer(Tapped):
    def __init__(self, body: nn.Sequential, scale: float, label: str) -> None:
        super().__init__(label, "residual")
        self.body, self.scale = body, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(x + self.scale * self.body(x))


class PoolLayer(Tapped):
    def __init__(self, label: str) -> None:
        super().__init__(label, "pool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(x.mean(dim=tuple(range(3, x.dim()))))


class FlattenLayer(Tapped):
    def __init__(self, label: str) -> None:
        super().__init__(label, "flatten")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(x.reshape(x.shape[0], x.shape[1], -1))


def build_layers(
    nodes: Sequence[NodeBase], in_shape: tuple[int, ...], build: Build, suffix: str = ""
) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Torch layers for ``nodes``, each from its node's ``torch_module`` rule (repeat blocks
    unrolled with independent weights), and the output shape. Labels are spec paths, with
    ``#i`` per repeat iteration."""
    layers: list[nn.Module] = []
    shape = in_shape
    for node in nodes:
        module, shape = rule(node, "torch_module")(node, shape, build, suffix)
        layers.append(module)
    return nn.Sequential(*layers), shape


def last_weight_node(nodes: Sequence[NodeBase]) -> Any:
    """The readout: the spec's last top-level node when it is a weight layer (found past
    acts, pools and flattens); None when the spec ends inside a block with a body, whose every
    layer is then hidden."""
    for node in reversed(nodes):
        if getattr(module_of(node), "HAS_WEIGHTS", False):
            return node
        if getattr(node, "body", None):
            return None
    return None
