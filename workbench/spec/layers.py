"""Parse a list of raw layers into Spec nodes, dispatching each to its node-kind module.

Shapes are inferred along the way, so every node is checked against its real input shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from workbench import nodes
from workbench.spec.fields import sequence, show, type_name, unknown_hint
from workbench.spec.model import Node
from workbench.spec.where import Where

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Context:
    """What node parsers need beyond their own raw value: the spec-wide defaults."""

    defaults: Mapping[str, float] = field(default_factory=dict)

    def body(self, raw: object, where: Where, in_shape: Shape) -> tuple[tuple[Node, ...], Shape]:
        """Parse a nested body (repeat, residual): its nodes and output shape."""
        items = sequence(raw, where, hint="a body is a non-empty list of layers")
        if not items:
            raise where.error("the body is empty", "add at least one layer to the body")
        return parse_layers(items, where, self, in_shape)


def _split(item: object, where: Where) -> tuple[str, object]:
    """(kind, value) of one raw layer item: a one-key mapping or a bare kind name."""
    kinds = list(nodes.NODE_KINDS)
    if isinstance(item, str):
        module = nodes.NODE_KINDS.get(item)
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
    if kind not in nodes.NODE_KINDS:
        raise where.error(f"unknown layer kind {show(kind)}", unknown_hint(kind, kinds, "kind"))
    return kind, value


def parse_layers(
    items: list, where: Where, ctx: Context, in_shape: Shape
) -> tuple[tuple[Node, ...], Shape]:
    """Parse ``items`` (the list at ``where``): the nodes and the final output shape."""
    shape = in_shape
    out: list[Node] = []
    for index, item in enumerate(items):
        at = where.item(index)
        kind, value = _split(item, at)
        module = nodes.NODE_KINDS[kind]
        node = module.parse(value, at, ctx, shape)
        shape = module.output_shape(node, shape, at)
        out.append(node)
    return tuple(out), shape
