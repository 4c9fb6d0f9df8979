"""``build_network``: a torch module for an ensemble of finite-width networks from a Spec."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.sim.layers import Build, Tape, Tapped, build_layers, last_weight_node
from workbench.sim.streams import stream
from workbench.spec.model import Spec

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorkbenchError("--device cuda was asked for, but torch sees no CUDA device",
                             hint="use --device auto or cpu")  # fmt: skip
    return device


class Network(nn.Module):
    """E independent networks of one spec. ``forward`` takes (B, *input_shape), shared by all
    members, or (E, B, *input_shape), and returns (E, B, *output_shape)."""

    def __init__(self, spec: Spec, build: Build) -> None:
        super().__init__()
        self.spec, self.ensemble = spec, build.ensemble
        self.input_shape = tuple(spec.input_shape)
        self.layers, self.output_shape = build_layers(spec.layers, self.input_shape, build)
        self.dtype, self.device = build.dtype, build.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == len(self.input_shape) + 1:
            x = x.unsqueeze(0).expand(self.ensemble, *x.shape)
        if tuple(x.shape[2:]) != self.input_shape or x.shape[0] != self.ensemble:
            raise WorkbenchError(
                f"inputs of shape {tuple(x.shape)} do not fit {self.spec.name}: expected "
                f"(B, {', '.join(map(str, self.input_shape))}) or (E={self.ensemble}, B, ...)"
            )
        return self.layers(x.to(dtype=self.dtype, device=self.device))

    @contextmanager
    def tape(self) -> Iterator[Tape]:
        """Record every tapped layer's output during the forward passes inside the block."""
        tape = Tape()
        tapped = [m for m in self.modules() if isinstance(m, Tapped)]
        for module in tapped:
            module.tape = tape
        try:
            yield tape
        finally:
            for module in tapped:
                module.tape = None

    def ntk_scales(self) -> dict[str, Any]:
        """Per parameter name, the factor s with θ = √s ω in the NTK parameterisation (σ_w²/fan_in
        for weights, per tap σ_w² v_β/c_in for convs, σ_b² for biases): the NTK-parameterised
        empirical NTK weights the gradient outer products by s."""
        scales = {}
        for prefix, module in self.named_modules():
            for name, scale in getattr(module, "ntk_scale", {}).items():
                scales[f"{prefix}.{name}" if prefix else name] = scale
        return scales


def build_network(
    spec: Spec,
    width: int | None = None,
    ensemble: int = 1,
    seed: int = 0,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device = "auto",
    bn_statistics: str = "batch",
) -> Network:
    """Networks for ``spec`` with independent weights per member and per layer (repeat blocks
    unrolled); ``width`` replaces every dense width and conv channel count except the last
    weight layer's (the readout). A fixed seed reproduces the weights on the same device.
    ``bn_statistics``: ``batch`` (gradients flow through batch norms' statistics, as torch's
    training mode) or ``fixed`` (detached: constants of the network)."""
    if ensemble < 1 or (width is not None and width < 1):
        raise WorkbenchError("ensemble and width must be positive integers")
    if bn_statistics not in ("batch", "fixed"):
        raise WorkbenchError(f"bn_statistics must be batch or fixed, got {bn_statistics!r}")
    device = resolve_device(device)
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    generator = stream(seed, "weights", device)
    build = Build(ensemble, generator, dtype, device, width, last_weight_node(spec.layers),
                  bn_statistics)  # fmt: skip
    with torch.no_grad():
        return Network(spec, build)
