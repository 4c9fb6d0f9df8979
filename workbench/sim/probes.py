"""Probes: the theory's order parameters measured on an ensemble of finite networks.

Every probe returns per-member values (leading axis E), so a confidence interval comes from
the spread over independent networks. Names follow the theory: q, c (kernel), gradient norms,
NTK Θ, Fisher λ_max, moments ν_p, μ_p, normalized sensitivity χˡ, SNR, r_eff, Jacobian
singular values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call, jacrev, jvp, vjp

from workbench.sim.network import Network
from workbench.sim.streams import stream

WEIGHT_KINDS = ("dense", "conv")


def _features(h: torch.Tensor) -> torch.Tensor:
    """(E, B, C, *S) or (E, B, C) → (E, B, C·S) with channels and positions as 'neurons'."""
    return h.reshape(h.shape[0], h.shape[1], -1)


@dataclass
class LayerKernels:
    """Empirical kernels K_ab = (1/N) Σ_i h_ai h_bi of every weight layer's pre-activations:
    ``kernels[e, l]`` is member e's B × B kernel at tapped layer ``labels[l]``."""

    labels: list[str]
    kernels: torch.Tensor  # (E, L, B, B)

    @property
    def q(self) -> torch.Tensor:
        return torch.diagonal(self.kernels, dim1=-2, dim2=-1)

    @property
    def c(self) -> torch.Tensor:
        q = self.q
        return self.kernels / torch.sqrt(q.unsqueeze(-1) * q.unsqueeze(-2))


def layer_kernels(net: Network, x: torch.Tensor, kinds=WEIGHT_KINDS) -> LayerKernels:
    """qˡ and cˡ (pabari_zhou eqs. 3–7) as measured: averages over neurons (and positions)."""
    with torch.no_grad(), net.tape() as tape:
        net(x)
    picked = [(label, h) for label, kind, h in tape.entries if kind in kinds]
    kernels = []
    for _, h in picked:
        f = _features(h)
        kernels.append(f @ f.transpose(1, 2) / f.shape[-1])
    return LayerKernels([label for label, _ in picked], torch.stack(kernels, dim=1))


def gradient_norms(net: Network, x: torch.Tensor, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """‖∂L/∂Wˡ‖² per member and weight layer for L = Σ_b ⟨r, f(x_b)⟩ with a fixed random
    readout direction r (xiao2018 Fig. S2; the theory's backward variance ∝ χ₁^{L−l})."""
    net.zero_grad(set_to_none=True)
    out = net(x)
    gen = stream(seed, "readout", out.device)
    r = torch.randn(out.shape[2:], generator=gen, dtype=out.dtype, device=out.device)
    (out * r).sum().backward()
    labels, norms = [], []
    for module in net.modules():
        if getattr(module, "kind", None) in WEIGHT_KINDS:
            labels.append(module.label)
            norms.append(module.weight.grad.reshape(net.ensemble, -1).pow(2).sum(dim=1))
    net.zero_grad(set_to_none=True)
    return labels, torch.stack(norms, dim=1).detach()


def fisher_lower_norm(net: Network, x: torch.Tensor) -> torch.Tensor:
    """Per member, the lower bound on the Fisher's λ_max (mean_field_batchnorm Claim 3.1,
    eq. 147) over every parameter: ‖∇ Σ_b f_k(x_b)‖² / B² averaged over the outputs k, that
    is ‖E_x ∇f_k‖². One backward pass per output."""
    params = list(net.parameters())
    out = net(x)  # (E, B, *K)
    e, batch = out.shape[0], out.shape[1]
    out = out.reshape(e, batch, -1)
    total = sum(_member_gradient_norm(out[:, :, k].sum(), params, e) for k in range(out.shape[2]))
    return (total / (batch**2 * out.shape[2])).detach()


def fisher_trace(net: Network, x: torch.Tensor) -> torch.Tensor:
    """Per member, the trace of the empirical Fisher (1/B) Σ_b Σ_k ‖∇f_k(x_b)‖², its upper
    bound on λ_max (eq. 147). With batch norm in training mode f(x_b) depends on the whole
    batch, so every (input, output) is its own backward pass (sequential passes measured
    faster here than autograd's batched ones)."""
    params = list(net.parameters())
    out = net(x)
    e, batch = out.shape[0], out.shape[1]
    flat = out.reshape(e, -1)  # (E, B·K): one member's outputs never reach another's weights
    total = sum(_member_gradient_norm(flat[:, j].sum(), params, e) for j in range(flat.shape[1]))
    return (total / batch).detach()


def _member_gradient_norm(scalar: torch.Tensor, params: list, members: int) -> torch.Tensor:
    """‖∇_θ scalar‖² per member over every parameter (members never share weights, so the
    gradient of the sum over members is each member's own)."""
    grads = torch.autograd.grad(scalar, params, retain_graph=True)
    return sum(g.reshape(members, -1).pow(2).sum(dim=1) for g in grads)


def _output_function(net: Network) -> tuple[dict, Callable]:
    params = {name: p.detach() for name, p in net.named_parameters()}

    def f(p: dict, x: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, p, (x,))
        return out.reshape(out.shape[0], out.shape[1], -1)  # (E, B, K)

    return params, f


def _scales(net: Network, parameterization: str) -> dict[str, Any]:
    """Per parameter name, s_θ: a number, or a tensor broadcasting over one member's entries
    (a conv's per-tap σ_w² v_β / c_in)."""
    if parameterization not in ("ntk", "standard"):
        raise ValueError("parameterization is 'ntk' or 'standard'")
    names = [name for name, _ in net.named_parameters()]
    return net.ntk_scales() if parameterization == "ntk" else dict.fromkeys(names, 1.0)


def empirical_ntk(net: Network, x: torch.Tensor, parameterization: str = "ntk") -> torch.Tensor:
    """Θ[e, a, k, b, k′] = Σ_θ s_θ ∂f_ak/∂θ ∂f_bk′/∂θ of member e (xiao_bahri eq. 6's object),
    by torch.func.jacrev; s_θ = 1 (standard) or the NTK-parameterisation factor. Memory grows
    with E²·B·K·P: for small networks."""
    params, f = _output_function(net)
    scales = _scales(net, parameterization)
    jac = jacrev(lambda p: f(p, x))(params)
    e = net.ensemble
    theta = 0.0
    for name, j in jac.items():
        j = j.reshape(e, j.shape[1], j.shape[2], e, -1)
        own = torch.diagonal(j, dim1=0, dim2=3).permute(3, 0, 1, 2)  # (E, B, K, P)
        scale = torch.as_tensor(scales[name], dtype=own.dtype, device=own.device)
        scale = scale.expand(params[name].shape[1:]).reshape(-1)  # one factor per parameter
        theta = theta + torch.einsum("eakp,ebjp->eakbj", own * scale, own)
    return theta


def fisher_max_eigenvalue(
    net: Network,
    x: torch.Tensor,
    parameterization: str = "standard",
    iterations: int = 500,
    tolerance: float = 1e-10,
    seed: int = 0,
) -> torch.Tensor:
    """λ_max of the empirical Fisher I = (1/B) Σ_b J_bᵀ J_b (mean_field_batchnorm eq. 148) per
    member, by power iteration on products I v = (1/B) Jᵀ(J v) from jvp/vjp: the P × P matrix
    is never formed. Members are iterated together, each normalised on its own."""
    params, f = _output_function(net)
    scales = _scales(net, parameterization)
    e, batch = net.ensemble, x.shape[-len(net.input_shape) - 1]
    gen = stream(seed, "power_iteration", net.device)
    v = {
        n: torch.randn(p.shape, generator=gen, dtype=p.dtype, device=p.device) * (scales[n] > 0)
        for n, p in params.items()
    }

    def member_dot(a: dict, b: dict) -> torch.Tensor:
        return sum((a[n] * b[n]).reshape(e, -1).sum(dim=1) for n in a)

    def apply(v: dict) -> dict:
        # with θ = √s ω: J_ω = J_θ √s, so I_ω v = √s J_θᵀ J_θ (√s v)
        scaled = {n: v[n] * scales[n] ** 0.5 for n in v}
        _, jv = jvp(lambda p: f(p, x), (params,), (scaled,))
        _, pullback = vjp(lambda p: f(p, x), params)
        (jtjv,) = pullback(jv / batch)
        return {n: jtjv[n] * scales[n] ** 0.5 for n in v}

    estimate = torch.zeros(e, dtype=net.dtype, device=net.device)
    for _ in range(iterations):
        norm = member_dot(v, v).sqrt().clamp_min(1e-300)
        v = {n: t / norm.reshape(-1, *[1] * (t.dim() - 1)) for n, t in v.items()}
        fv = apply(v)
        new = member_dot(v, fv)
        done = (new - estimate).abs() <= tolerance * new.abs()
        estimate, v = new, fv
        if bool(done.all()):
            break
    return estimate


@dataclass
class Moments:
    """Moments of signal x and noise dx at every tapped layer (labatie2019 §3.1), per member:
    ν_p, μ_p (p = 2, 4) of signal and noise, normalized sensitivity χˡ (eq. 3), SNR and r_eff."""

    labels: list[str]
    kinds: list[str]
    nu2: torch.Tensor
    nu4: torch.Tensor
    mu2: torch.Tensor
    mu4: torch.Tensor
    noise_mu2: torch.Tensor
    noise_mu4: torch.Tensor
    chi: torch.Tensor
    snr: torch.Tensor
    r_eff: torch.Tensor


def _central(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, B, C, *S) → samples (E, B·S, C) of the feature vector ϕ(v, α) = v_{α,:}, raw and
    centered over the samples."""
    e, b, c = v.shape[:3]
    samples = v.reshape(e, b, c, -1).permute(0, 1, 3, 2).reshape(e, -1, c)
    return samples, samples - samples.mean(dim=1, keepdim=True)


def _effective_rank(centered: torch.Tensor) -> torch.Tensor:
    """tr C / λ_max(C) of the feature covariance C = X̂ᵀX̂/S, from the smaller of C and the
    sample Gram X̂X̂ᵀ/S (the same non-zero eigenvalues)."""
    if centered.shape[1] < centered.shape[2]:
        cov = centered @ centered.transpose(1, 2) / centered.shape[1]
    else:
        cov = centered.transpose(1, 2) @ centered / centered.shape[1]
    eig = torch.linalg.eigvalsh(cov)
    return eig.sum(dim=1) / eig[:, -1]


def moments(net: Network, x: torch.Tensor, noise: float = 1e-3, seed: int = 0) -> Moments:
    """Simultaneous propagation of the signal and of a small input noise dx (labatie2019
    eqs. 1–2) by forward-mode differentiation: dxˡ = Jˡ dx exactly (first order). The first
    row is the input itself (label ``input``, χ⁰ = 1), then every tapped layer's output."""
    if x.dim() == len(net.input_shape) + 1:
        x = x.unsqueeze(0).expand(net.ensemble, *x.shape).clone()
    x = x.to(dtype=net.dtype, device=net.device)
    gen = stream(seed, "noise", net.device)
    dx = noise * torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    labels: list[str] = []
    kinds: list[str] = []

    def tapped(inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with net.tape() as tape:
            net(inp)
        labels[:] = [label for label, _, _ in tape.entries]
        kinds[:] = [kind for _, kind, _ in tape.entries]
        return tuple(h for _, _, h in tape.entries)

    with torch.no_grad():
        signals, noises = jvp(tapped, (x,), (dx,))
    labels.insert(0, "input")
    kinds.insert(0, "input")
    signals, noises = (x, *signals), (dx, *noises)

    _, x0c = _central(x)
    dx0 = _central(dx)[0]
    base = (dx0.pow(2).mean(dim=(1, 2)) / x0c.pow(2).mean(dim=(1, 2))).sqrt()
    stats: dict[str, list[torch.Tensor]] = {k: [] for k in Moments.__dataclass_fields__}
    for s, n in zip(signals, noises):
        raw, centered = _central(s)
        noise_samples, _ = _central(n)
        stats["nu2"].append(raw.pow(2).mean(dim=(1, 2)))
        stats["nu4"].append(raw.pow(4).mean(dim=(1, 2)))
        stats["mu2"].append(centered.pow(2).mean(dim=(1, 2)))
        stats["mu4"].append(centered.pow(4).mean(dim=(1, 2)))
        stats["noise_mu2"].append(noise_samples.pow(2).mean(dim=(1, 2)))
        stats["noise_mu4"].append(noise_samples.pow(4).mean(dim=(1, 2)))
        stats["r_eff"].append(_effective_rank(centered))
    stacked = {k: torch.stack(v, dim=1) for k, v in stats.items() if v}
    stacked["chi"] = (stacked["noise_mu2"] / stacked["mu2"]).sqrt() / base.unsqueeze(1)
    stacked["snr"] = stacked["mu2"] / stacked["noise_mu2"]
    return Moments(labels, kinds, **stacked)


def jacobian_singular_values(net: Network, x: torch.Tensor) -> torch.Tensor:
    """Singular values of the input-output Jacobian ∂f(x)/∂x at one input x (shape
    input_shape), per member: (E, min(out, in)); dense and conv alike. One forward-mode pass
    with the input repeated once per input coordinate and the identity as tangents (the batch
    must not interact, so batch norm has no per-input Jacobian here)."""
    x = x.to(dtype=net.dtype, device=net.device)
    n_in = x.numel()
    batch = x.unsqueeze(0).expand(n_in, *x.shape).contiguous()
    basis = torch.eye(n_in, dtype=x.dtype, device=x.device).reshape(n_in, *x.shape)
    with torch.no_grad():
        _, tangents = jvp(net, (batch,), (basis,))
    jac = tangents.reshape(net.ensemble, n_in, -1).transpose(1, 2)  # (E, out, in)
    return torch.linalg.svdvals(jac)
