"""Initialise a practitioner's own torch model as a spec (or a ``workbench tune`` result) says,
and check it: ``apply`` draws every nn.Linear / nn.Conv1d / nn.Conv2d in order (Gaussian,
orthogonal or delta-orthogonal, ``workbench.sim.init``); ``check`` measures the model's q and
c per weight layer by forward hooks and compares them with the mean-field theory of the same
chain (pabari_zhou eqs. 3–7; convolutions: xiao2018 eq. 2.5, circular padding), with the
spread of freshly drawn copies as the interval."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.errors import UnsupportedError, WorkbenchError

WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
PASS_THROUGH = (nn.Identity,)  # torch modules that leave the chain's kernel alone
FLATTENING = (nn.Flatten,)  # torch modules that turn a conv's features into a flat vector
ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.SiLU: "swish",
               nn.Softsign: "softsign"}  # fmt: skip
Z_INTERVAL = 4.0  # a layer passes when |measured − theory| ≤ 4 spreads of one network


@dataclass(frozen=True)
class LayerInit:
    sigma_w2: float
    sigma_b2: float
    init: str = "gaussian"
    variance: tuple[float, ...] | None = None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's nn.Linear / nn.Conv1d / nn.Conv2d, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)]


def _plan(model: nn.Module, source: Any) -> list[LayerInit]:
    """One LayerInit per weight layer of the model, from a spec (its weight layers in order,
    repeats unrolled), a tune result, or a mapping {sigma_w2, sigma_b2[, init]} for all."""
    from workbench.spec.model import Spec
    from workbench.tune import Tuned

    layers = weight_layers(model)
    if not layers:
        raise WorkbenchError("the model has no nn.Linear, nn.Conv1d or nn.Conv2d layer")
    if isinstance(source, (str, Path)):
        from workbench.compile import load_spec

        source = load_spec(source)
    if isinstance(source, Tuned):
        source = {"sigma_w2": source.sigma_w2, "sigma_b2": source.sigma_b2}
    if isinstance(source, Mapping):
        one = LayerInit(float(source["sigma_w2"]), float(source.get("sigma_b2", 0.0)),
                        str(source.get("init", "gaussian")))  # fmt: skip
        return [one] * len(layers)
    if not isinstance(source, Spec):
        raise WorkbenchError(f"cannot initialise from a {type(source).__name__}",
                             hint="give a Spec, a spec file, a tune result or "
                             "{'sigma_w2': ..., 'sigma_b2': ...}")  # fmt: skip
    from workbench.nodes.base import has_weights, unrolled

    nodes = [n for n in unrolled(source.layers) if has_weights(n)]
    if len(nodes) != len(layers):
        raise WorkbenchError(f"the model has {len(layers)} weight layers, the spec "
                             f"{source.name} {len(nodes)} (repeats unrolled)",
                             hint="apply a spec of the model's own architecture, or a "
                             "mapping of variances for every layer")  # fmt: skip
    return [LayerInit(float(n.sigma_w2), float(n.sigma_b2), n.init, getattr(n, "variance", None))
            for n in nodes]  # fmt: skip


def apply(model: nn.Module, source: Any, seed: int = 0) -> nn.Module:
    """Re-initialise the model's weight layers in place as ``source`` says; returns it."""
    from workbench.sim.init import init_conv_, init_linear_

    generator = torch.Generator(device="cpu").manual_seed(seed)
    for (name, layer), plan in zip(weight_layers(model), _plan(model, source)):
        device = layer.weight.device
        gen = generator if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
        if isinstance(layer, nn.Linear):
            init_linear_(layer, plan.sigma_w2, plan.sigma_b2, plan.init, gen)
        else:
            if layer.padding_mode != "circular" and plan.init != "gaussian":
                raise WorkbenchError(
                    f"{name}: {plan.init} init preserves norms only with circular padding",
                    hint="padding_mode='circular'",
                )
            init_conv_(layer, plan.sigma_w2, plan.sigma_b2, plan.init, plan.variance, gen)
    return model


@dataclass
class InitCheck:
    """Per weight layer: the model's q and mean c over input pairs, the theory's, and the
    spread (sd) of those numbers over freshly drawn copies of the model."""

    layers: list[str]
    q_model: np.ndarray
    q_theory: np.ndarray
    q_spread: np.ndarray
    c_model: np.ndarray
    c_theory: np.ndarray
    c_spread: np.ndarray
    draws: int
    notes: list[str] = field(default_factory=list)

    @property
    def within(self) -> np.ndarray:
        """Per layer: q and c inside Z_INTERVAL spreads of the theory."""
        ok_q = np.abs(self.q_model - self.q_theory) <= Z_INTERVAL * self.q_spread
        ok_c = np.abs(self.c_model - self.c_theory) <= Z_INTERVAL * self.c_spread
        return ok_q & (ok_c | np.isnan(self.c_theory))

    @property
    def passed(self) -> bool:
        return bool(self.within.all())

    def to_dict(self) -> dict:
        rows = [{"layer": name, "q_model": float(self.q_model[i]),
                 "q_theory": float(self.q_theory[i]), "q_spread": float(self.q_spread[i]),
                 "c_model": _maybe(self.c_model[i]), "c_theory": _maybe(self.c_theory[i]),
                 "c_spread": _maybe(self.c_spread[i]), "within": bool(self.within[i])}
                for i, name in enumerate(self.layers)]  # fmt: skip
        return {"draws": self.draws, "interval": f"theory ± {Z_INTERVAL:g} sd of one network",
                "passed": self.passed, "layers": rows, "notes": self.notes}  # fmt: skip


def _maybe(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def check(model: nn.Module, inputs: Any, source: Any, draws: int = 16,
          seed: int = 1) -> InitCheck:  # fmt: skip
    """The model's per-layer q (mean over units and inputs of h², the weight layer's output)
    and c (mean over input pairs) against the theory of its chain under ``source``'s
    variances; the interval is the spread over ``draws`` copies drawn by ``apply``."""
    from workbench.compile import spec_from_dict
    from workbench.theory.evaluate import layer_kernels_theory

    x = torch.as_tensor(np.asarray(inputs, dtype=np.float64))
    if not 2 <= x.dim() <= 4 or x.shape[0] < 1:
        raise WorkbenchError(f"inputs must be an (m, d), (m, C, L) or (m, C, H, W) array, got "
                             f"shape {tuple(x.shape)}")  # fmt: skip
    if draws < 2:
        raise WorkbenchError("draws must be at least 2 (the interval is their spread)")
    plans = _plan(model, source)
    spec = spec_from_dict(_chain_spec(model, plans, tuple(x.shape[1:])))
    _, kernels = layer_kernels_theory(spec, x.numpy())
    q_theory = np.array([np.mean(np.diagonal(k)) for k in kernels])
    c_theory = np.array([_mean_correlation(k) for k in kernels])
    names = [name for name, _ in weight_layers(model)]
    q_model, c_model = _measure(model, x)
    samples = []
    for k in range(draws):
        fresh = apply(copy.deepcopy(model), source, seed=seed + k)
        samples.append(_measure(fresh, x))
    q_draws = np.stack([s[0] for s in samples])
    c_draws = np.stack([s[1] for s in samples])
    notes = [] if x.shape[0] > 1 else ["one input: no correlations to compare"]
    return InitCheck(names, q_model, q_theory, q_draws.std(axis=0, ddof=1), c_model, c_theory,
                     c_draws.std(axis=0, ddof=1), draws, notes)  # fmt: skip


def _mean_correlation(k: np.ndarray) -> float:
    """c averaged over the input pairs of a per-unit kernel (nan for one input)."""
    d = np.sqrt(np.diagonal(k))
    rows, cols = np.triu_indices(len(d), 1)
    return float(np.mean(k[rows, cols] / (d[rows] * d[cols]))) if len(rows) else math.nan


def _chain_spec(model: nn.Module, plans: Sequence[LayerInit], shape: tuple[int, ...]) -> dict:
    """The model as spec data: dense and conv layers with their variances, the activations
    between them and flattens (the theory's chain); anything else is refused with its name."""
    layers: list[Any] = []
    weights = iter(plans)
    for name, module in model.named_modules():
        if list(module.children()) or isinstance(module, PASS_THROUGH):
            continue
        if isinstance(module, nn.Linear):
            plan = next(weights)
            layers.append({"dense": {"width": module.out_features, "sigma_w2": plan.sigma_w2,
                                     "sigma_b2": plan.sigma_b2}})  # fmt: skip
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            layers.append({"conv": _conv_layer(name, module, next(weights))})
        elif isinstance(module, FLATTENING):
            if any("conv" in layer for layer in layers if isinstance(layer, dict)):
                layers.append("flatten")
        elif type(module) in ACTIVATIONS:
            layers.append({"act": ACTIVATIONS[type(module)]})
        elif isinstance(module, nn.GELU) and module.approximate == "none":
            layers.append({"act": "gelu"})
        else:
            raise UnsupportedError(
                f"{name or 'the model'}: {type(module).__name__} has no mean-field rule here",
                hint="check compares chains of nn.Linear, nn.Conv1d/2d (circular padding), "
                "nn.Flatten and the activations "
                + ", ".join(sorted(v for v in ACTIVATIONS.values()))
                + ", gelu, in order",
            )
    return {"name": "model", "input": {"shape": list(shape)}, "layers": layers}


def _conv_layer(name: str, conv: nn.Conv1d | nn.Conv2d, plan: LayerInit) -> dict:
    """The spec's circular conv for a torch conv with circular 'same' padding, or a refusal."""
    size, stride = tuple(conv.kernel_size), set(conv.stride)
    same = tuple(k // 2 for k in size)
    if (
        conv.padding_mode != "circular"
        or tuple(conv.padding) != same
        or len(stride) != 1
        or any(k % 2 == 0 for k in size)
        or set(conv.dilation) != {1}
        or conv.groups != 1
    ):
        raise UnsupportedError(
            f"{name}: the theory's convolution is circular with odd kernels, 'same' padding, one "
            "stride for every axis, no dilation and no groups",
            hint="nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode='circular')",
        )  # fmt: skip
    layer = {"channels": conv.out_channels, "kernel": list(size), "stride": stride.pop(),
             "sigma_w2": plan.sigma_w2, "sigma_b2": plan.sigma_b2, "init": plan.init}  # fmt: skip
    if plan.variance is not None:
        layer["variance"] = list(plan.variance)
    return layer


def _measure(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per weight layer, q = mean of h² over units and inputs, and c averaged over pairs."""
    outputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
             for _, layer in weight_layers(model)]  # fmt: skip
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(x.to(dtype=param.dtype, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
    q, c = [], []
    for h in outputs:
        f = h.reshape(h.shape[0], -1).double().cpu()
        k = f @ f.T / f.shape[1]
        d = torch.diagonal(k)
        q.append(float(d.mean()))
        corr = k / torch.sqrt(d[:, None] * d[None, :])
        rows, cols = torch.triu_indices(len(d), len(d), 1)
        c.append(float(corr[rows, cols].mean()) if len(rows) else math.nan)
    return np.array(q), np.array(c)
