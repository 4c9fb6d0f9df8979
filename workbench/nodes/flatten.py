"""Flatten: ``- flatten`` (or ``{flatten: {}}``): (C, *S) -> (C * prod(S),)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.nodes.base import NodeBase, ParseContext
from workbench.spec import fields
from workbench.spec.shapes import Shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "flatten"
BARE = True
READOUT = "flatten"  # xiao_bahri's CNN-F readout
EXAMPLE = "flatten"
SCHEMA = fields.Schema({})


@dataclass(frozen=True)
class Flatten(NodeBase):
    """(C, *S) -> (C·prod(S),)."""

    kind: ClassVar[str] = KIND


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Flatten:
    """Bare ``flatten`` (value None) or an empty mapping."""
    SCHEMA.read({} if value is None else value, where.at(KIND), "write `- flatten`")
    return Flatten(path=where.path, line=where.line)


def output_shape(node: Flatten, in_shape: Shape, where: Where) -> Shape:
    """All dims multiplied together (a flat input stays as it is)."""
    return (math.prod(in_shape),)


def kernel(node: Flatten, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """xiao_bahri eq. 18. Flattening keeps the same-pixel pairs (``flattened``) until a dense
    layer averages them (``Evaluator.flat``): a flattened feature (channel, pixel) has its
    pixel's kernel, so an activation in between acts on each pixel's kernel before the average.
    Flattening flat features changes nothing."""
    if state.mode == "flat" or state.flattened:
        return state
    state = ev.realized(state)
    return state.replace(nngp=state.same_pixel(state.nngp), ntk=state.same_pixel(state.ntk),
                         mode="diagonal", channels=state.channels * state.pixels,
                         flattened=True)  # fmt: skip


def backward(node: Flatten, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """Flattening keeps every (channel, pixel) feature, so the same-pixel G̃ passes through;
    from pixel-pair kernels (full mode) it is embedded with 0 between distinct pixels, which
    is what the dense readout after it produces (independent weights per pixel)."""
    inp = entry.inp
    if inp.mode != "full" or inp.flattened:
        return cot
    n = inp.pixels
    m = inp.m
    full = np.zeros((m, m, n, n), dtype=cot.grad.dtype)
    full[:, :, np.arange(n), np.arange(n)] = cot.grad.reshape(m, m, n)
    return replace(cot, grad=full.reshape(m, m, *inp.spatial, *inp.spatial))


def noise(node: Flatten, noise: Noise, walk: NoiseWalk, entry: TapeEntry,
          suffix: str) -> Noise:  # fmt: skip
    """Every (channel, pixel) feature keeps its noise."""
    return replace(noise, field=None)


def lower(node: Flatten, attrs: dict, last: str, mode: str) -> tuple[list | None, str]:
    """The fused program's step: the mean over same-pixel pairs (nothing for flat input)."""
    from workbench.theory.kernel_program import Readout

    if len(attrs["in_shape"]) == 1:
        return [], last
    return [Readout(pool=False)], "readout"


def torch_module(node: Flatten, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """Channels and pixels as one feature axis."""
    from workbench.sim.layers import FlattenLayer

    return FlattenLayer(node.path + suffix), (math.prod(in_shape),)


def symbolic(node: Flatten, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """xiao_bahri eq. 18: K_out = n⁻¹ Σ_α K[α, α] (Θ likewise) once a dense layer reads the
    flattened features; a pending φ acts on each pixel's kernel first. Backward: each pixel
    keeps its G̃, distinct pixels none (the dense readout's weights are independent)."""
    import sympy as sp

    from workbench import notation as n

    pixels = math.prod(attrs["in_shape"][1:])
    if len(attrs["in_shape"]) == 1:
        return {}, phi

    def mean(k):
        return sp.Sum(k[n.alpha, n.alpha], (n.alpha, 0, pixels - 1)) / pixels

    rules = {
        "nngp": sp.Eq(n.K_out, mean(n.K_in)),
        "ntk": sp.Eq(n.Theta_out, mean(n.Theta_in)),
        "backward": sp.Eq(
            sp.IndexedBase(r"\tilde{G}^{l}")[n.alpha, n.alpha2],
            sp.KroneckerDelta(n.alpha, n.alpha2) * n.G_out_px[n.alpha],
        ),
        "noise": sp.Eq(sp.IndexedBase(r"n^{l+1}_{a}")[n.alpha], n.n_in_px[n.alpha]),
    }
    return rules, phi
