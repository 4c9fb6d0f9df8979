"""What every node kind shares: the node base class, the registry, parsing a list of layers and
chaining shape rules, and rule lookup with a typed refusal.

A node kind is a module of ``workbench.nodes`` providing ``KIND`` (its spec name), ``BARE``
(may be written as a bare string, ``- flatten``), ``EXAMPLE`` (a spec snippet for hints),
``SCHEMA`` (its keys), ``parse(value, where, ctx, in_shape) -> node``, ``output_shape(node,
in_shape, where) -> shape`` and, per order-parameter family it supports, its rules (``kernel``,
``backward``, ``symbolic``, ``torch_module``, ``lower``...). Nothing outside ``nodes/``
dispatches on a node's class or kind: it asks ``rule(node, family)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

from workbench.errors import UnsupportedError
from workbench.spec import fields
from workbench.spec.fields import sequence, show, type_name, unknown_hint
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

REGISTRY: dict[str, ModuleType] = {}  # filled by workbench.nodes.__init__, in spec order


# the keys of the normalising kinds (bn, layernorm): the affine map after normalising
NORMALISATION_SCHEMA = fields.Schema(
    {
        "gamma": fields.Key(fields.real, 1.0, "scale after normalisation"),
        "beta": fields.Key(fields.real, 0.0, "shift after normalisation"),
    }
)


@dataclass(frozen=True, kw_only=True)
class NodeBase:
    """Every node records its spec path (``layers[2].repeat.body[0]``) and 1-based source line,
    so that later stages report errors where the user wrote it."""

    kind: ClassVar[str] = ""
    path: str = ""
    line: int | None = None


def register(*modules: ModuleType) -> None:
    for module in modules:
        REGISTRY[module.KIND] = module


def module_of(node: NodeBase) -> ModuleType:
    return REGISTRY[node.kind]


def rule(node: NodeBase, family: str) -> Callable[..., Any]:
    """The node kind's rule for ``family`` (e.g. ``kernel``, ``symbolic``, ``torch_module``),
    or UnsupportedError naming the node, its spec path and the family."""
    found = getattr(module_of(node), family, None)
    if found is None:
        raise UnsupportedError(
            f"{node.path or node.kind}: a {node.kind} node has no '{family}' rule",
            hint=f"the {family} order parameters are not defined for {node.kind} layers yet",
        )
    return found


def has_rule(node: NodeBase, family: str) -> bool:
    return getattr(module_of(node), family, None) is not None


def flat_nodes(nodes: Iterable[NodeBase]) -> Iterator[NodeBase]:
    """Every node and every node inside its bodies, once each, in spec order (no unrolling)."""
    for node in nodes:
        yield node
        yield from flat_nodes(getattr(node, "body", ()))


@dataclass(frozen=True)
class WeightMap:
    """A node's fully-connected mean-field map on a two-input state (pabari_zhou eqs. 3–7):
    q' = σ_w² q + σ_b² on the second moments of its input."""

    sigma_w2: Any
    sigma_b2: Any


@dataclass(frozen=True)
class PointwiseMap:
    """A node's fully-connected map that applies φ to a Gaussian field."""

    activation: Any


def unrolled(nodes: Iterable[NodeBase]) -> Iterator[NodeBase]:
    """The nodes in network order with every loop written out (``unrolled`` rule of a kind
    that repeats its body; other nodes stand for themselves)."""
    for node in nodes:
        expand = getattr(module_of(node), "unrolled", None)
        if expand is None:
            yield node
        else:
            yield from expand(node)


def blocks(nodes: Iterable[NodeBase]) -> Iterator[NodeBase]:
    """Every repeated block (a kind with ``IS_BLOCK``), outer before inner, looking inside
    every body (residual bodies included), in spec order."""
    for node in nodes:
        if getattr(module_of(node), "IS_BLOCK", False):
            yield node
        yield from blocks(getattr(node, "body", ()))


def has_weights(node: NodeBase) -> bool:
    return getattr(module_of(node), "HAS_WEIGHTS", False)


def has_batch_statistics(nodes: Iterable[NodeBase]) -> bool:
    """Whether any node, bodies included, normalises by statistics of the batch (batch norm)."""
    return any(getattr(module_of(n), "BATCH_STATISTICS", False) for n in flat_nodes(nodes))


# --- shapes ------------------------------------------------------------------------------


def walk_nodes(
    body: Iterable[NodeBase], in_shape: Shape, file: str | None = None
) -> Iterator[tuple[NodeBase, Shape, Shape]]:
    """Yield (node, in_shape, out_shape) through ``body`` in order, never unrolling repeats."""
    shape = in_shape
    for node in body:
        out = module_of(node).output_shape(node, shape, Where(node.path, node.line, file))
        yield node, shape, out
        shape = out


def chain_shape(body: Iterable[NodeBase], in_shape: Shape, file: str | None = None) -> Shape:
    """The output shape of ``body`` applied to ``in_shape``."""
    shape = in_shape
    for _, _, out in walk_nodes(body, in_shape, file):
        shape = out
    return shape


def require_same_shape(kind: str, in_shape: Shape, out_shape: Shape, where: Where) -> None:
    """Residual bodies (and repeat bodies after their first pass) map a shape to itself."""
    if tuple(out_shape) != tuple(in_shape):
        raise where.error(
            f"the {kind} body changes the shape from {show_shape(in_shape)} "
            f"to {show_shape(out_shape)}",
            f"a {kind} body must keep the shape: make its last dense/conv output "
            f"{in_shape[0]} units/channels and do not flatten or pool inside it",
        )


# --- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseContext:
    """What node parsers need beyond their own raw value: the spec-wide defaults."""

    defaults: Mapping[str, float] = field(default_factory=dict)

    def body(
        self, raw: object, where: Where, in_shape: Shape
    ) -> tuple[tuple[NodeBase, ...], Shape]:
        """Parse a nested body (repeat, residual): its nodes and output shape."""
        items = sequence(raw, where, hint="a body is a non-empty list of layers")
        if not items:
            raise where.error("the body is empty", "add at least one layer to the body")
        return parse_layers(items, where, self, in_shape)


def _split(item: object, where: Where) -> tuple[str, object]:
    """(kind, value) of one raw layer item: a one-key mapping or a bare kind name."""
    kinds = list(REGISTRY)
    if isinstance(item, str):
        module = REGISTRY.get(item)
        if module is None:
            raise where.error(f"unknown layer kind '{item}'", unknown_hint(item, kinds, "kind"))
        if not module.BARE:
            raise where.error(f"layer '{item}' needs settings", f"write it as `{module.EXAMPLE}`")
        return item, None
    if not isinstance(item, Mapping):
        raise where.error(
            f"a layer must be a one-key mapping such as `dense: {{width: 512}}`, "
            f"got {type_name(item)} {show(item)}",
            f"write `- <kind>: <settings>`; kinds: {', '.join(kinds)}",
        )
    if len(item) != 1:
        names = ", ".join(show(k) for k in item) or "none"
        raise where.error(
            f"a layer must have exactly one key (its kind), got {len(item)}: {names}",
            "check the indentation: settings go inside the kind, e.g. `- dense: {width: 512}`",
        )
    ((kind, value),) = item.items()
    if kind not in REGISTRY:
        raise where.error(f"unknown layer kind {show(kind)}", unknown_hint(kind, kinds, "kind"))
    return kind, value


def parse_layers(
    items: list, where: Where, ctx: ParseContext, in_shape: Shape
) -> tuple[tuple[NodeBase, ...], Shape]:
    """Parse ``items`` (the list at ``where``): the nodes and the final output shape."""
    shape = in_shape
    out: list[NodeBase] = []
    for index, item in enumerate(items):
        at = where.item(index)
        kind, value = _split(item, at)
        module = REGISTRY[kind]
        node = module.parse(value, at, ctx, shape)
        shape = module.output_shape(node, shape, at)
        out.append(node)
    return tuple(out), shape
