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

from workbench.nodes import Act, BatchNorm, Conv, Dense, Flatten, Node, Pool, Repeat, Residual
from workbench.nodes.conv import tap_variances
from workbench.sim.init import conv_kernel, scaled_orthogonal

BN_EPS = 1e-12  # the mean-field batch norm has no ε; this only guards a zero batch variance


@dataclass
class Build:
    """What every layer needs to create its parameters."""

    ensemble: int
    generator: torch.Generator
    dtype: torch.dtype
    device: torch.device
    width: int | None = None  # overrides dense widths / conv channels, except the readout's
    readout: Node | None = None  # the last weight layer of the spec

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=self.dtype, device=self.device)

    def size(self, node: Dense | Conv, declared: int) -> int:
        return declared if self.width is None or node is self.readout else self.width


@dataclass
class Tape:
    """Records (label, kind, tensor) of tapped layers during one forward pass."""

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
    """h = W x + b with W (E, out, in) ~ N(0, σ_w²/in) or ``scaled_orthogonal``."""

    def __init__(self, node: Dense, fan_in: int, width: int, build: Build, label: str) -> None:
        super().__init__(label, "dense")
        e = build.ensemble
        if node.init == "orthogonal":
            weight = scaled_orthogonal(
                width, fan_in, node.sigma_w2, build.generator, e, build.dtype, build.device
            )
        else:
            weight = build.randn(e, width, fan_in) * (node.sigma_w2 / fan_in) ** 0.5
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(build.randn(e, width) * node.sigma_b2**0.5)
        self.ntk_scale = {"weight": node.sigma_w2 / fan_in, "bias": node.sigma_b2}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2)))


class ConvLayer(Tapped):
    """Circular-padded stride-1 convolution; the ensemble rides in grouped channels."""

    def __init__(self, node: Conv, c_in: int, c_out: int, build: Build, label: str) -> None:
        super().__init__(label, "conv")
        kernels = [
            conv_kernel(
                node.init, node.kernel, c_in, c_out, node.sigma_w2, tap_variances(node),
                generator=build.generator, dtype=build.dtype, device=build.device,
            )
            for _ in range(build.ensemble)
        ]  # fmt: skip
        self.weight = nn.Parameter(torch.stack(kernels))
        self.bias = nn.Parameter(build.randn(build.ensemble, c_out) * node.sigma_b2**0.5)
        taps = 1
        for k in node.kernel:
            taps *= k
        self.ntk_scale = {"weight": node.sigma_w2 / (c_in * taps), "bias": node.sigma_b2}
        self.padding: list[int] = []
        for k in reversed(node.kernel):
            self.padding += [(k - 1) // 2, k - 1 - (k - 1) // 2]
        self.conv: Callable = (None, nn.functional.conv1d, nn.functional.conv2d)[len(node.kernel)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e, b, c, *spatial = x.shape
        stacked = x.transpose(0, 1).reshape(b, e * c, *spatial)
        padded = nn.functional.pad(stacked, self.padding, mode="circular")
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        out = self.conv(padded, weight, self.bias.reshape(-1), groups=e)
        return self._record(out.reshape(b, e, -1, *spatial).transpose(0, 1))


class ActLayer(Tapped):
    def __init__(self, node: Act, label: str) -> None:
        super().__init__(label, "act")
        self.phi = node.activation.torch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._record(self.phi(x))


class BatchNormLayer(Tapped):
    """γ (x − mean) / std + β with batch statistics per member and channel (mean over the
    batch and spatial axes), as in mean_field_batchnorm §3; no running averages."""

    def __init__(self, node: BatchNorm, label: str) -> None:
        super().__init__(label, "bn")
        self.gamma, self.beta = node.gamma, node.beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = (1, *range(3, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        var = x.var(dim=axes, keepdim=True, unbiased=False)
        return self._record(self.gamma * (x - mean) / (var + BN_EPS).sqrt() + self.beta)


class ResidualLayer(nn.Module):
    def __init__(self, body: nn.Sequential, scale: float) -> None:
        super().__init__()
        self.body, self.scale = body, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.body(x)


class PoolLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(3, x.dim())))


class FlattenLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], -1)


def build_layers(
    nodes: Sequence[Node], in_shape: tuple[int, ...], build: Build, suffix: str = ""
) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Torch layers for ``nodes`` (repeat blocks unrolled with independent weights), and the
    output shape. Labels are spec paths, with ``#i`` per repeat iteration."""
    layers: list[nn.Module] = []
    shape = in_shape
    for node in nodes:
        label = node.path + suffix
        if isinstance(node, Dense):
            width = build.size(node, node.width)
            layers.append(DenseLayer(node, shape[0], width, build, label))
            shape = (width,)
        elif isinstance(node, Conv):
            channels = build.size(node, node.channels)
            layers.append(ConvLayer(node, shape[0], channels, build, label))
            shape = (channels, *shape[1:])
        elif isinstance(node, Act):
            layers.append(ActLayer(node, label))
        elif isinstance(node, BatchNorm):
            layers.append(BatchNormLayer(node, label))
        elif isinstance(node, Residual):
            body, shape = build_layers(node.body, shape, build, suffix)
            layers.append(ResidualLayer(body, node.scale))
        elif isinstance(node, Pool):
            layers.append(PoolLayer())
            shape = shape[:1]
        elif isinstance(node, Flatten):
            layers.append(FlattenLayer())
            size = 1
            for s in shape:
                size *= s
            shape = (size,)
        elif isinstance(node, Repeat):
            for i in range(node.times):
                body, shape = build_layers(node.body, shape, build, f"{suffix}#{i}")
                layers.append(body)
        else:  # pragma: no cover - the spec loader admits no other kinds
            raise TypeError(f"unknown node {node!r}")
    return nn.Sequential(*layers), shape


def last_weight_node(nodes: Sequence[Node]) -> Any:
    """The readout: the spec's last top-level node when it is a dense or conv layer (found
    past acts, pools and flattens); None when the spec ends inside a repeat or residual block,
    whose every layer is then hidden."""
    for node in reversed(nodes):
        if isinstance(node, Dense | Conv):
            return node
        if isinstance(node, Repeat | Residual):
            return None
    return None
