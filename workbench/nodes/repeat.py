"""Repeat block: ``repeat {times, body}``, kept as a loop (never unrolled)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from workbench.errors import SpecError
from workbench.nodes.base import NodeBase, ParseContext, chain_shape
from workbench.nodes.base import unrolled as base_unrolled
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "repeat"
UNROLLS = True  # its output is its last pass's: walks that report per node skip it
BARE = False
IS_BLOCK = True
EXAMPLE = "repeat: {times: 10, body: [{dense: {width: 512}}, {act: tanh}]}"
SCHEMA = fields.Schema(
    {
        "times": fields.Key(fields.positive_int, doc="number of repetitions (integer >= 1)"),
        "body": fields.Key(lambda v, w: v, doc="list of layers; after its first pass, same shape"),
    }
)


@dataclass(frozen=True)
class Repeat(NodeBase):
    """``times`` passes of ``body``, kept as a loop (never unrolled)."""

    kind: ClassVar[str] = KIND
    times: int
    body: tuple[NodeBase, ...]


def parse(value: object, where: Where, ctx: ParseContext, in_shape: Shape) -> Repeat:
    """Validate the keys, then parse the body against this block's input shape; a body that
    changes the shape on its first pass (``[dense 512, act]`` on 10 inputs) must keep the
    shape it reaches (checked by chaining its shape rules once more)."""
    at = where.at(KIND)
    values = SCHEMA.read(value, at, hint=f"write `{EXAMPLE}`")
    body_at = at.at("body")
    body, out = ctx.body(values["body"], body_at, in_shape)
    node = Repeat(times=values["times"], body=body, path=where.path, line=where.line)
    _settled_shape(node, in_shape, out, body_at)
    return node


def output_shape(node: Repeat, in_shape: Shape, where: Where) -> Shape:
    """The shape after the first pass, which later passes keep (at any ``times``)."""
    first = chain_shape(node.body, in_shape, where.file)
    return _settled_shape(node, in_shape, first, where)


def _settled_shape(node: Repeat, in_shape: Shape, first: Shape, where: Where) -> Shape:
    if tuple(first) != tuple(in_shape) and node.times > 1:
        try:
            again = chain_shape(node.body, first, where.file)
        except SpecError as err:
            raise SpecError(
                f"on the repeat body's second pass (input {show_shape(first)}, the shape its "
                f"first pass made): {err.message}",
                path=err.path,
                file=err.file,
                line=err.line,
                hint=err.hint,
            ) from None
        if tuple(again) != tuple(first):
            raise where.error(
                f"the repeat body changes the shape on every pass: {show_shape(in_shape)} → "
                f"{show_shape(first)} → {show_shape(again)}",
                "a repeated body must keep the shape it reaches after its first pass: make "
                "its last dense/conv output as many units/channels as its first one reads",
            )
    return tuple(first)


SETTLED_CHECK = 8  # passes between asking whether the rest can run as the settled loop


def kernel(node: Repeat, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """The body graph applied ``times`` times (a loop, never unrolled); a body that changed
    the shape on its first pass runs its graph at the settled shape afterwards. A pass that
    returns its input exactly (a fixed point reached in floating point, NTK included) ends
    the loop: the remaining passes would repeat it bit for bit."""
    from workbench.gaussian.mehler import walk_bands

    with walk_bands():  # rows of slowly walking variances from bands, inside this block only
        return _passes(node, state, ev, attrs)


def _passes(node: Repeat, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    from tqdm import tqdm

    from workbench.errors import TheoryError
    from workbench.theory.kernel_program import STOP_CHECK, growth_note
    from workbench.theory.ntk_series import second_moments_repeat, summed_passes
    from workbench.theory.pace import Pace
    from workbench.theory.settled_loop import can_settle, settled_passes

    again = attrs.get("body_again", attrs["body"])
    shown = ev.progress and node.times >= 100
    scales: list[tuple[int, float]] = []  # (pass, largest entry) every STOP_CHECK passes
    bar = tqdm(total=node.times, desc=node.path, disable=not shown, leave=False)
    pace = Pace(node.path, node.times, can_settle(again, state))
    i, summed = 0, False
    while i < node.times:
        if i % SETTLED_CHECK == 1 and i < node.times - 1:  # settled: the rest but the last fused
            found = settled_passes(ev, again, state, node.times - 1 - i, node.path)
            if found is not None:
                state, stopped = found
                if stopped is not None:
                    state = state.noted(f"{node.path}: exact fixed point after {i + stopped} "
                                        "passes")  # fmt: skip
                bar.update(node.times - 1 - i)
                i = node.times - 1
        before = state
        try:
            state = ev.propagate(attrs["body"] if i == 0 else again, state)
        except TheoryError as exc:
            if "overflowed" not in exc.message or len(scales) < 2:
                raise
            rate = growth_note(scales[-1], scales[-2], node.times)
            raise TheoryError(f"{exc.message} in pass {i + 1} of {node.path}{rate}",
                              hint=exc.hint) from None  # fmt: skip
        if i > 0 and state.repeats(before):
            bar.close()
            return state.noted(f"{node.path}: exact fixed point after {i + 1} passes")
        if i > 0 and not summed and second_moments_repeat(state, before):
            summed = True  # asked once: a body whose NTK map mixes entries is walked
            found = summed_passes(ev, again, before, state, node.times - 1 - i)
            if found is not None:
                bar.close()
                return found.noted(
                    f"{node.path}: the second moments repeated exactly after {i + 1} passes; "
                    f"the NTK's remaining {node.times - 1 - i} passes (affine in it, checked "
                    "on the last pass) were summed in closed form"
                )
        if i % STOP_CHECK == 0:
            scales.append((i, state.largest_entry()))
        i += 1
        bar.update()
        try:
            pace.check(i, state)
        except TheoryError:
            bar.close()
            raise
    bar.close()
    return state


def backward(node: Repeat, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """The body's backward map once per pass, last pass first (pass i's weight layers are
    labelled ``#i`` as in the simulator). Passes after an exact forward fixed point repeat the
    last recorded one (the same states, so its cached multipliers serve)."""
    from tqdm import tqdm

    frames, outer = entry.frames, walk.upstream
    shown = walk.ev.progress and node.times >= 100
    for i in tqdm(reversed(range(node.times)), total=node.times, desc=f"{node.path} (backward)",
                  disable=not shown, leave=False):  # fmt: skip
        before = frames[min(i - 1, len(frames) - 1)][-1].node if i > 0 else outer
        cot = walk.frame(frames[min(i, len(frames) - 1)], cot, f"{suffix}#{i}", before)
    return cot


def noise(node: Repeat, noise: Noise, walk: NoiseWalk, entry: TapeEntry, suffix: str) -> Noise:
    """The body's noise map once per pass (labels ``#i``); passes after an exact forward
    fixed point reuse the last recorded one."""
    from tqdm import tqdm

    frames = entry.frames
    shown = walk.ev.progress and node.times >= 100
    for i in tqdm(range(node.times), desc=f"{node.path} (noise)", disable=not shown,
                  leave=False):  # fmt: skip
        noise = walk.frame(frames[min(i, len(frames) - 1)], noise, f"{suffix}#{i}")
    return noise


def lower(node: Repeat, attrs: dict, last: str, mode: str) -> tuple[list | None, str]:
    """The fused program's Loop over the body's steps; the body must also follow itself
    (lowered twice: what precedes its second pass is its own end)."""
    from workbench.theory.kernel_program import Loop, lower_graph

    first, last = lower_graph(attrs["body"], last, mode)
    if first is None or node.times == 1:
        return (None if first is None else [Loop(1, tuple(first), node.path)]), last
    again, last = lower_graph(attrs.get("body_again", attrs["body"]), last, mode)
    if again is None:
        return None, last
    if again == first:
        return [Loop(node.times, tuple(first), node.path)], last
    return [Loop(1, tuple(first), node.path), Loop(node.times - 1, tuple(again), node.path)], last


def torch_module(node: Repeat, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """The body unrolled ``times`` times with independent weights (labels get ``#i``)."""
    from torch import nn

    from workbench.sim.layers import build_layers

    blocks, shape = [], in_shape
    for i in range(node.times):
        body, shape = build_layers(node.body, shape, build, f"{suffix}#{i}")
        blocks.append(body)
    return nn.Sequential(*blocks), shape


def unrolled(node: Repeat) -> Iterator[NodeBase]:
    """The body written out ``times`` times (for layer-by-layer walks; the evaluator loops)."""
    for _ in range(node.times):
        yield from base_unrolled(node.body)


def symbolic(node: Repeat, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """The body's map 𝓑 applied ``times`` times: K^{l+T} = 𝓑^T(K^l) (its stages follow);
    backward the body's backward map 𝓑ᵀ as many times, last pass first."""
    import sympy as sp

    from workbench import notation as n

    body_map = sp.Function(rf"\mathcal{{B}}^{{{node.times}}}")
    back_map = sp.Function(rf"(\mathcal{{B}}^{{\top}})^{{{node.times}}}")
    rules = {
        "loop": sp.Eq(sp.Symbol(f"K^{{l+{node.times}}}_{{ab}}"), body_map(n.K)),
        "backward": sp.Eq(n.G_in, back_map(sp.Symbol(rf"\tilde{{G}}^{{l+{node.times}}}_{{ab}}"))),
        "noise": sp.Eq(
            sp.Symbol(f"n^{{l+{node.times}}}_{{a}}"),
            sp.Function(rf"\mathcal{{N}}^{{{node.times}}}")(n.n_in),
        ),  # fmt: skip
    }
    return rules, phi
