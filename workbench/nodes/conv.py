"""Convolution (circular padding, stride 1): ``conv {channels, kernel, variance?, ...}``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

KIND = "conv"
BARE = False
EXAMPLE = "conv: {channels: 64, kernel: 3}"
INITS = ("gaussian", "orthogonal", "delta_orthogonal")
SUM_TOLERANCE = 1e-9
SCHEMA = fields.Schema(
    {
        "channels": fields.Key(fields.positive_int, doc="number of output channels"),
        "kernel": fields.Key(fields.int_or_int_list, doc="odd tap count, or one per spatial dim"),
        "variance": fields.Key(fields.real_list, None, "kernel-tap weights summing to 1"),
        "sigma_w2": fields.Key(fields.positive_real, None, "weight variance (else defaults)"),
        "sigma_b2": fields.Key(fields.nonnegative_real, None, "bias variance (else defaults)"),
        "init": fields.Key(fields.choice(*INITS), "gaussian", "weight distribution"),
    }
)


@dataclass(frozen=True)
class Conv(NodeBase):
    """A circular convolution; ``variance`` holds the kernel-tap weights v (row-major, sum 1)."""

    kind: ClassVar[str] = KIND
    channels: int
    kernel: tuple[int, ...]  # one entry per spatial dimension
    sigma_w2: float
    sigma_b2: float
    variance: tuple[float, ...] | None = None
    init: str = "gaussian"  # gaussian | orthogonal | delta_orthogonal


def _spatial_rank(in_shape: Shape, where: Where) -> int:
    if len(in_shape) < 2:
        raise where.error(
            f"conv needs a spatial input (C, L) or (C, H, W), but its input is flat "
            f"{show_shape(in_shape)}",
            "remove the flatten/pool/dense before it, or give `input.shape` spatial dims",
        )
    return len(in_shape) - 1


def _kernel(raw: int | tuple[int, ...], in_shape: Shape, where: Where) -> tuple[int, ...]:
    rank = len(in_shape) - 1
    kernel = (raw,) * rank if isinstance(raw, int) else raw
    if len(kernel) != rank:
        raise where.error(
            f"kernel has {len(kernel)} dims but the input has {rank} spatial dims",
            f"give one tap count per spatial dim (e.g. {list((3,) * rank)}) or a single int",
        )
    for taps in kernel:
        if taps % 2 == 0:
            raise where.error(f"kernel sizes must be odd, got {list(kernel)}", "use 1, 3, 5, ...")
    _check_fits(kernel, in_shape, where)
    return kernel


def _check_fits(kernel: tuple[int, ...], in_shape: Shape, where: Where) -> None:
    spatial = tuple(in_shape[1:])
    if any(k > n for k, n in zip(kernel, spatial, strict=True)):
        raise where.error(
            f"kernel {list(kernel)} is larger than the spatial size {show_shape(spatial)}",
            "use a kernel no larger than the input along each spatial dim",
        )


def _variance(raw: tuple[float, ...], kernel: tuple[int, ...], where: Where) -> tuple[float, ...]:
    taps = math.prod(kernel)
    if len(raw) != taps:
        raise where.error(
            f"variance has {len(raw)} entries but the kernel {list(kernel)} has {taps} taps",
            f"give {taps} weights (row-major over the kernel) that sum to 1",
        )
    total = math.fsum(raw)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise where.error(
            f"variance weights must sum to 1, got {total!r}",
            "divide each weight by their sum",
        )
    return raw


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Conv:
    """Validate ``value`` (the mapping under ``conv``) and build the node."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    _spatial_rank(in_shape, where)
    kernel = _kernel(values["kernel"], in_shape, at.at("kernel"))
    variance = values["variance"]
    if variance is not None:
        variance = _variance(variance, kernel, at.at("variance"))
    sigma_w2, sigma_b2 = fields.weight_variances(values, at, ctx.defaults)
    return Conv(
        channels=values["channels"],
        kernel=kernel,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        variance=variance,
        init=values["init"],
        path=where.path,
        line=where.line,
    )


def output_shape(node: Conv, in_shape: Shape, where: Where) -> Shape:
    """(C, *S) -> (channels, *S): circular padding keeps the spatial size."""
    rank = _spatial_rank(in_shape, where)
    spatial = tuple(in_shape[1:])
    kernel_at = where.at(KIND).at("kernel")
    if len(node.kernel) != rank:
        raise kernel_at.error(
            f"kernel has {len(node.kernel)} dims but the input has {rank} spatial dims",
            f"give one tap count per spatial dim, e.g. {list((3,) * rank)}",
        )
    _check_fits(node.kernel, in_shape, kernel_at)
    return (node.channels, *spatial)
