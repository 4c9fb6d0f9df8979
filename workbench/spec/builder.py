"""Python builder: functions returning the raw-dict form of each layer.

``workbench.build_spec`` validates a list of them through ``spec_from_dict``, the same path as
spec files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Layer = Any  # the raw form of one layer: a one-key dict, or "flatten"


def dense(width: int, **kw: Any) -> dict:
    """``dense {width, sigma_w2?, sigma_b2?, init?}``."""
    return {"dense": {"width": width, **kw}}


def conv(channels: int, kernel: int | Sequence[int], **kw: Any) -> dict:
    """``conv {channels, kernel, variance?, sigma_w2?, sigma_b2?, init?}``."""
    if isinstance(kernel, tuple):
        kernel = list(kernel)
    return {"conv": {"channels": channels, "kernel": kernel, **kw}}


def act(name_or_expr: str | Mapping[str, str]) -> dict:
    """``act: name`` or ``act: {expr: ...}``."""
    value = dict(name_or_expr) if isinstance(name_or_expr, Mapping) else name_or_expr
    return {"act": value}


def bn(**kw: Any) -> dict:
    """``bn {gamma?, beta?}``."""
    return {"bn": dict(kw)}


def residual(body: Iterable[Layer], scale: float = 1.0) -> dict:
    """``residual {body, scale}``: x + scale * body(x)."""
    return {"residual": {"body": list(body), "scale": scale}}


def pool(mode: str = "global_avg") -> dict:
    """``pool: global_avg``."""
    return {"pool": mode}


def flatten() -> str:
    """``flatten``."""
    return "flatten"


def repeat(times: int, body: Iterable[Layer]) -> dict:
    """``repeat {times, body}`` (kept as a loop, never unrolled)."""
    return {"repeat": {"times": times, "body": list(body)}}
