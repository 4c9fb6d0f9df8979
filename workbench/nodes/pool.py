"""Pooling: ``pool: global_avg`` averages every spatial position: (C, *S) -> (C,)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.errors import UnsupportedError
from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "pool"
BARE = False
READOUT = "pool"  # xiao_bahri's CNN-P readout
NEEDS_PIXEL_PAIRS = True
EXAMPLE = "pool: global_avg"
MODES = ("global_avg",)
_check_mode = fields.choice(*MODES)
VALUE = fields.Key(_check_mode, doc="the pooling mode (the value itself: `pool: global_avg`)")


@dataclass(frozen=True)
class Pool(NodeBase):
    """Global average pooling over every spatial position."""

    kind: ClassVar[str] = KIND
    mode: str = "global_avg"


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Pool:
    """The value is the pooling mode name."""
    return Pool(mode=_check_mode(value, where.at(KIND)), path=where.path, line=where.line)


def output_shape(node: Pool, in_shape: Shape, where: Where) -> Shape:
    """(C, *S) -> (C,); a flat input is an error."""
    if len(in_shape) < 2:
        raise where.error(
            f"pool needs a spatial input (C, L) or (C, H, W), got {show_shape(in_shape)}",
            "remove the pool (the input is already flat)",
        )
    return (in_shape[0],)


def kernel(node: Pool, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """xiao_bahri eq. 18: the mean over every pixel pair (needs full pixel-pair kernels)."""
    state = ev.realized(state)
    if state.mode == "flat" or state.flattened:
        raise UnsupportedError(f"{node.path}: pool needs a spatial input")
    if state.mode != "full":
        raise UnsupportedError(
            f"{node.path}: pooling needs the full pixel-pixel kernel",
            hint="use the full spatial mode (the default)",
        )
    mean = state.mean.reshape(state.m, -1).mean(axis=1)
    return state.replace(nngp=state.pixel_average(state.nngp), ntk=state.pixel_average(state.ntk),
                         mean=mean, mode="flat", spatial=())  # fmt: skip


def backward(node: Pool, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """y_c = (1/P) Σ_α x_c(α), so δ_x(α) = δ_y / P at every pixel: G̃_x(α, β) = G̃_y / P²
    for every pixel pair (fully correlated across pixels: the full mode carries it)."""
    inp = walk.realized(entry)
    n = walk.ctx.num(inp.pixels)
    shape = (*cot.grad.shape, *[1] * (2 * len(inp.spatial)))
    grad = np.broadcast_to(cot.grad.reshape(shape), inp.nngp.shape) / (n * n)
    return replace(cot, grad=grad)


def noise(node: Pool, noise: Noise, walk: NoiseWalk, entry: TapeEntry, suffix: str) -> Noise:
    """y_c = (1/P) Σ_α x_c(α) with the noise uncorrelated between pixels:
    n_y = Σ_α n_x(α) / P²."""
    n = noise.n.reshape(noise.n.shape[0], -1)
    pixels = walk.ctx.num(n.shape[1])
    return replace(noise, n=n.sum(axis=1) / (pixels * pixels), field=None)


def lower(node: Pool, attrs: dict, last: str, mode: str) -> tuple[list | None, str]:
    """The fused program's step: the mean over all pixel pairs (full mode only)."""
    from workbench.theory.kernel_program import Readout

    if len(attrs["in_shape"]) < 2 or mode != "full":
        return None, last
    return [Readout(pool=True)], "readout"


def torch_module(node: Pool, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """The mean over every spatial position."""
    from workbench.sim.layers import PoolLayer

    return PoolLayer(node.path + suffix), tuple(in_shape[:1])


def symbolic(node: Pool, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """xiao_bahri eq. 18: K_out = n⁻² Σ_{α,α′} K[α, α′] (Θ likewise), n pixels; backward
    every pixel pair receives G̃_out/n²; the input noise n_out = n⁻² Σ_α n[α]."""
    import sympy as sp

    from workbench import notation as n

    pixels = math.prod(attrs["in_shape"][1:])
    last = pixels - 1

    def mean(k):
        return sp.Sum(k[n.alpha, n.alpha2], (n.alpha, 0, last), (n.alpha2, 0, last)) / pixels**2

    rules = {
        "nngp": sp.Eq(n.K_out, mean(n.K_in)),
        "ntk": sp.Eq(n.Theta_out, mean(n.Theta_in)),
        "backward": sp.Eq(sp.IndexedBase(r"\tilde{G}^{l}")[n.alpha, n.alpha2], n.G_out / pixels**2),
        "noise": sp.Eq(n.n_out, sp.Sum(n.n_in_px[n.alpha], (n.alpha, 0, last)) / pixels**2),
    }
    return rules, None
