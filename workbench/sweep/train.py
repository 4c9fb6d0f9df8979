"""Train one finite network built from a spec on a data set: the trainability experiment of
one sweep cell (pabari_zhou §4, xiao2018 §5, xiao_bahri §5), with its loss and accuracy curves."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.sweep.data import Dataset

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("cross_entropy", "mse")
CURVE_POINTS = 20  # evaluations along the run
TRAIN_EVAL_EXAMPLES = 2048  # training accuracy and loss are measured on this many, fixed
EXPLODED = 1e6  # a minibatch loss this many times the first one counts as diverged


@dataclass(frozen=True)
class TrainSettings:
    """How every cell trains: minibatch SGD (or Adam) on cross-entropy, or on the squared error
    ½‖f(x) − onehot(y)‖² averaged over the batch, whose Gauss–Newton Hessian is the Fisher
    information I of mean_field_batchnorm eq. 10 (so its η_max bound applies)."""

    steps: int = 300
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.0
    batch_size: int = 128
    width: int | None = None  # replaces every hidden width (the spec's own when None)
    seed: int = 0
    loss: str = "cross_entropy"  # or mse: ½‖f − onehot‖², whose Gauss–Newton is the Fisher

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise WorkbenchError(
                f"unknown loss {self.loss!r}", hint=f"use one of {', '.join(LOSSES)}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise WorkbenchError(f"unknown optimizer {self.optimizer!r}",
                                 hint=f"use one of {', '.join(OPTIMIZERS)}")  # fmt: skip
        if not (
            self.steps >= 1 and self.batch_size >= 1 and (self.width is None or self.width >= 1)
        ):
            raise WorkbenchError("steps, batch size and width must be positive integers")
        if not (math.isfinite(self.lr) and self.lr > 0 and 0 <= self.momentum < 1):
            raise WorkbenchError("the learning rate must be positive and 0 <= momentum < 1")

    def with_values(self, values: dict[str, Any]) -> TrainSettings:
        return replace(self, **values) if values else self

    def to_dict(self) -> dict:
        return asdict(self)


def train_cell(spec_data: Any, data: Dataset, settings: TrainSettings,
               device: str = "cpu") -> dict:  # fmt: skip
    """Train the spec's network (float32, one member) for ``settings.steps`` minibatch steps;
    the loss and accuracy curves, the final numbers, the step where the loss diverged (not
    finite, or EXPLODED times its first value: mean_field_batchnorm's parameter explosion), if
    it did, and the wall time."""
    from workbench.compile import spec_from_dict
    from workbench.sim.network import build_network

    start = time.perf_counter()
    spec = spec_from_dict(spec_data)
    data = data.shaped(spec.input_shape)
    net = build_network(spec, width=settings.width, seed=settings.seed, dtype="float32",
                        device=device)  # fmt: skip
    if net.output_shape != (data.classes,):
        raise WorkbenchError(
            f"the spec's output has shape {list(net.output_shape)}, the data {data.classes} "
            "classes", hint=f"end the spec with a dense layer of width {data.classes}")  # fmt: skip
    tensors = {k: torch.as_tensor(getattr(data, k), device=device)
               for k in ("x_train", "y_train", "x_test", "y_test")}  # fmt: skip
    probe = slice(0, min(TRAIN_EVAL_EXAMPLES, len(data.y_train)))
    optimizer = _optimizer(net, settings)
    batches = torch.Generator().manual_seed(settings.seed)
    marks = set(np.linspace(0, settings.steps, CURVE_POINTS + 1).round().astype(int).tolist())
    x_train, y_train = tensors["x_train"], tensors["y_train"]

    def point(step: int) -> dict:
        test = _measure(net, tensors["x_test"], tensors["y_test"], "test", settings.loss)
        train = _measure(net, x_train[probe], y_train[probe], "train", settings.loss)
        return {"step": step, **train, **test}

    curve: list[dict] = []
    diverged_at, first = None, math.inf
    for step in range(settings.steps + 1):
        if step in marks:
            curve.append(point(step))
        if step == settings.steps:
            break
        pick = torch.randint(len(y_train), (settings.batch_size,), generator=batches).to(device)
        loss = _loss(net(x_train[pick])[0], y_train[pick], settings.loss)
        value = loss.item()
        first = value if step == 0 else first
        if not math.isfinite(value) or value > EXPLODED * first:
            diverged_at = step
            curve.append(point(step))
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    final = curve[-1]
    return {"final": {k: v for k, v in final.items() if k != "step"}, "curve": curve,
            "diverged_at_step": diverged_at, "seconds": time.perf_counter() - start,
            "device": str(device)}  # fmt: skip


def _optimizer(net: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=settings.lr)
    return torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum)


def _loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mse":
        target = torch.nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return 0.5 * (logits - target).pow(2).sum(dim=1).mean()
    return torch.nn.functional.cross_entropy(logits, labels)


def _measure(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, part: str,
             kind: str) -> dict:  # fmt: skip
    """Loss (None when not finite) and accuracy on (x, y)."""
    with torch.no_grad():
        logits = net(x)[0]
        loss = float(_loss(logits, y, kind))
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return {f"{part}_loss": loss if math.isfinite(loss) else None, f"{part}_accuracy": accuracy}
