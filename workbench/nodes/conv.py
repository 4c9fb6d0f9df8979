"""Convolution (circular padding, optional stride): ``conv {channels, kernel, variance?, ...}``."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import product
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.errors import UnsupportedError
from workbench.nodes.base import NodeBase, ParseContext, WeightMap
from workbench.spec import fields
from workbench.spec.shapes import Shape, show_shape
from workbench.spec.where import Where

if TYPE_CHECKING:
    from workbench.theory.backward import BackwardWalk, Cotangent
    from workbench.theory.evaluate import Evaluator, TapeEntry
    from workbench.theory.moments import Noise, NoiseWalk
    from workbench.theory.state import KernelState

KIND = "conv"
BARE = False
EXAMPLE = "conv: {channels: 64, kernel: 3}"
INITS = ("gaussian", "orthogonal", "delta_orthogonal")
SUM_TOLERANCE = 1e-9
HAS_WEIGHTS = True
SCHEMA = fields.Schema(
    {
        "channels": fields.Key(fields.positive_int, doc="number of output channels"),
        "kernel": fields.Key(fields.int_or_int_list, doc="odd tap count, or one per spatial dim"),
        "variance": fields.Key(fields.real_list, None, "kernel-tap weights summing to 1"),
        "sigma_w2": fields.Key(fields.positive_real, None, "weight variance (else defaults)"),
        "sigma_b2": fields.Key(fields.nonnegative_real, None, "bias variance (else defaults)"),
        "init": fields.Key(fields.choice(*INITS), "gaussian", "weight distribution"),
        "stride": fields.Key(fields.positive_int, 1, "step between output pixels (divides S)"),
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
    stride: int = 1  # every stride-th pixel of the circular convolution, along every axis


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
        if values["init"] != "gaussian":
            raise at.at("variance").error(
                f"a variance vector sets the Gaussian init's tap variances; init "
                f"{values['init']} fixes its own profile",
                "drop `variance`, or use `init: gaussian`",
            )
    sigma_w2, sigma_b2 = fields.weight_variances(values, at, ctx.defaults)
    return Conv(
        channels=values["channels"],
        kernel=kernel,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        variance=variance,
        init=values["init"],
        stride=values["stride"],
        path=where.path,
        line=where.line,
    )


def output_shape(node: Conv, in_shape: Shape, where: Where) -> Shape:
    """(C, *S) -> (channels, *S/stride): circular padding keeps the spatial size, the stride
    keeps every stride-th pixel (it must divide every spatial size)."""
    rank = _spatial_rank(in_shape, where)
    spatial = tuple(in_shape[1:])
    kernel_at = where.at(KIND).at("kernel")
    if len(node.kernel) != rank:
        raise kernel_at.error(
            f"kernel has {len(node.kernel)} dims but the input has {rank} spatial dims",
            f"give one tap count per spatial dim, e.g. {list((3,) * rank)}",
        )
    _check_fits(node.kernel, in_shape, kernel_at)
    if any(n % node.stride for n in spatial):
        raise (
            where.at(KIND)
            .at("stride")
            .error(
                f"stride {node.stride} does not divide the spatial size {show_shape(spatial)}",
                "use a stride that divides every spatial size (circular padding keeps it)",
            )
        )
    return (node.channels, *(n // node.stride for n in spatial))


# --- tap geometry -------------------------------------------------------------------------

Taps = tuple[tuple[tuple[int, ...], float], ...]


def tap_variances(node: Conv) -> tuple[float, ...]:
    """v_β, the expected share of σ_w² on kernel tap β (row-major; sums to 1), as the node's
    init draws its weights:

    * ``gaussian``: the spec's variance vector, else uniform 1/taps (xiao2018 eq. 2.2);
    * ``delta_orthogonal``: everything on the centre tap (xiao2018 Algorithm 2);
    * ``orthogonal``: xiao2018 Algorithm 1 builds each axis's taps from k − 1 block steps
      [P, 1 − P] with independent random projections of half rank (E tr P / n = 1/2), so tap t
      of an axis carries C(k − 1, t) / 2^{k−1} of the norm (binomial; distinct paths have zero
      expected overlap), and a 2-D kernel the outer product of its axes' profiles. Derived
      here; the paper states only norm preservation. Checked against the construction by
      Monte-Carlo in the tests (k = 3, 5, 7 and 3×3).

    Different taps' weights are uncorrelated in expectation under all three, so the kernel rule
    A_v ⋆ holds with this v."""
    taps = math.prod(node.kernel)
    if node.init == "delta_orthogonal":
        centre = np.ravel_multi_index(tuple((k - 1) // 2 for k in node.kernel), node.kernel)
        return tuple(1.0 if t == centre else 0.0 for t in range(taps))
    if node.init == "orthogonal":
        profile = np.ones(())
        for k in node.kernel:
            axis = np.array([math.comb(k - 1, t) for t in range(k)]) / 2 ** (k - 1)
            profile = np.multiply.outer(profile, axis)
        return tuple(float(w) for w in profile.ravel())
    return tuple(float(w) for w in node.variance) if node.variance else (1 / taps,) * taps


def mode_eigenvalues(node: Conv, spatial: tuple[int, ...]) -> np.ndarray:
    """λ_k of A_v ⋆ on the Fourier mode of frequency k of the periodic grid ``spatial``: the
    DFT of v placed at its tap offsets (xiao2018 eqs. 2.11–2.13). Shape ``spatial``; complex
    in general, real for a v symmetric about the centre."""
    if node.stride != 1:
        raise UnsupportedError(
            f"{node.path}: a strided conv changes the grid, so it has no Fourier modes of its "
            "own (xiao2018's modes need stride 1)"
        )
    grid = np.zeros(spatial)
    for offsets, w in conv_taps(node):
        grid[tuple((-o) % n for o, n in zip(offsets, spatial))] += w
    return np.fft.fftn(grid)


def conv_taps(node: Conv) -> Taps:
    """Per kernel tap β: the np.roll offsets that bring X(α + β − c) to α (c the kernel's
    centre) and v_β."""
    offsets = product(*(range(k) for k in node.kernel))
    return tuple(
        (tuple(-(t - (k - 1) // 2) for t, k in zip(tap, node.kernel)), w)
        for tap, w in zip(offsets, tap_variances(node))
    )


def shift_sum(kernel: np.ndarray, taps: Taps, mode: str, spatial: tuple[int, ...]) -> np.ndarray:
    """[A_v ⋆ X](α, α') = Σ_β v_β X(α + β − c, α' + β − c) (full) or X(α + β − c) (diagonal),
    periodic (xiao2018 eq. 2.3)."""
    d = len(spatial)
    axes = list(range(2, 2 + d)) + (list(range(2 + d, 2 + 2 * d)) if mode == "full" else [])
    out = np.zeros_like(kernel)
    for offsets, w in taps:
        if w != 0:
            out += w * np.roll(kernel, list(offsets) * (2 if mode == "full" else 1), axis=axes)
    return out


# --- kernel rule --------------------------------------------------------------------------


def kernel(node: Conv, state: KernelState, ev: Evaluator, attrs: dict) -> KernelState:
    """xiao2018 eq. 2.3 and xiao_bahri eq. 31: a weight layer whose mixing is A_v ⋆."""
    from workbench.nodes.dense import weight_layer

    state = ev.realized(state)
    if state.mode == "flat":
        raise UnsupportedError(f"{node.path}: conv needs a spatial input")
    taps = conv_taps(node)
    ones = tuple((offsets, 1.0) for offsets, _ in taps)
    out = weight_layer(
        state,
        node.sigma_w2,
        node.sigma_b2,
        node.channels,
        ev.parameterization,
        mix=lambda k: shift_sum(k, taps, state.mode, state.spatial),
        plain=lambda k: shift_sum(k, ones, state.mode, state.spatial),
    )
    if node.stride == 1:
        return out
    pick = _subsample(node.stride, state)
    return out.replace(nngp=pick(out.nngp), ntk=None if out.ntk is None else pick(out.ntk),
                       mean=out.mean[(slice(None), *pick.axes)],
                       spatial=tuple(n // node.stride for n in state.spatial))  # fmt: skip


class _subsample:
    """Every stride-th pixel of a kernel laid out as ``state`` (pixel axes after the two input
    axes: one set in the diagonal layout, two in the full one)."""

    def __init__(self, stride: int, state: KernelState) -> None:
        self.axes = tuple(slice(None, None, stride) for _ in state.spatial)
        self.sets = 2 if state.mode == "full" else 1

    def __call__(self, kernel: np.ndarray) -> np.ndarray:
        return kernel[(slice(None), slice(None), *self.axes * self.sets)]


def _upsample(grad: np.ndarray, stride: int, inp: KernelState) -> np.ndarray:
    """The transpose of ``_subsample``: G̃ on the full grid, zero off the kept pixels."""
    pick = _subsample(stride, inp)
    shape = (*grad.shape[:2], *inp.spatial * pick.sets)
    full = np.zeros(shape, dtype=grad.dtype)
    full[(slice(None), slice(None), *pick.axes * pick.sets)] = grad
    return full


def backward(node: Conv, cot: Cotangent, walk: BackwardWalk, entry: TapeEntry,
             suffix: str) -> Cotangent:  # fmt: skip
    """xiao2018 §A.1 (eq. 2.16): δ_x(γ) = Σ_β W_βᵀ δ_h(γ − β + c), so the unit-summed second
    moments map by the transposed A_v: G̃_x = σ_w² Σ_β v_β G̃_h(γ − β + c, γ′ − β + c) (the
    taps' offsets reversed). Records E‖∂L/∂W‖² = C_in Σ ⟨G̃_h, P(K̂)⟩ with P the plain tap sum
    (every tap's weight gradient pairs δ_h(α) with x(α + β − c)). A stride places G̃ back on
    the kept pixels of the full grid (zero elsewhere) before the transposed A_v."""
    inp = walk.realized(entry)
    taps = conv_taps(node)
    ones = tuple((offsets, 1.0) for offsets, _ in taps)
    pick = _subsample(node.stride, inp)
    moments = walk.once(entry, "moments", lambda: inp.channels * pick(shift_sum(
        inp.nngp, ones, inp.mode, inp.spatial)))  # fmt: skip
    walk.weight(node, suffix, cot, moments, entry.out, inp.channels)
    reverse = tuple((tuple(-o for o in offsets), w) for offsets, w in taps)
    grad = cot.grad if node.stride == 1 else _upsample(cot.grad, node.stride, inp)
    back = shift_sum(grad, reverse, inp.mode, inp.spatial)
    return replace(cot, grad=walk.ctx.num(node.sigma_w2) * back)


def noise(node: Conv, noise: Noise, walk: NoiseWalk, entry: TapeEntry, suffix: str) -> Noise:
    """labatie2019 eq. 1: dy(α) = Σ_β ω_β dx(α + β − c) with independent taps, and the noise
    uncorrelated between pixels, so n_y(α) = σ_w² Σ_β v_β n_x(α + β − c): A_v on the pixel
    diagonal (xiao2018 eq. 2.3), then every stride-th pixel."""
    spatial = entry.inp.spatial
    mixed = shift_sum(noise.n[:, None], conv_taps(node), "diagonal", spatial)[:, 0]
    if node.stride > 1:
        mixed = mixed[(slice(None), *(slice(None, None, node.stride),) * len(spatial))]
    return replace(noise, n=walk.ctx.num(node.sigma_w2) * mixed, field=None)


def lower(node: Conv, attrs: dict, last: str, mode: str) -> tuple[list | None, str]:
    """The fused program's step: a Linear mixing by this conv's taps."""
    from workbench.theory.kernel_program import Linear

    shape = attrs["in_shape"]
    if len(node.kernel) != len(shape) - 1 or node.stride != 1:
        return None, last
    return [Linear(node.sigma_w2, node.sigma_b2, shape[0], conv_taps(node))], "linear"


# --- torch module -------------------------------------------------------------------------


def torch_module(node: Conv, in_shape: Shape, build: Any, suffix: str) -> tuple[Any, Shape]:
    """E members' circular convolutions, kernels drawn by the node's init (Gaussian with the
    tap variances, xiao2018 Algorithm 1 or 2), biases N(0, σ_b²). In the NTK
    parameterisation tap β's weights carry s = σ_w² v_β / c_in, matching the kernel rule."""
    import torch

    from workbench.sim.init import conv_kernel
    from workbench.sim.layers import ConvLayer

    c_in, c_out = in_shape[0], build.size(node, node.channels)
    v = tap_variances(node)
    kernels = [
        conv_kernel(node.init, node.kernel, c_in, c_out, node.sigma_w2, v,
                    generator=build.generator, dtype=build.dtype, device=build.device)
        for _ in range(build.ensemble)
    ]  # fmt: skip
    bias = build.randn(build.ensemble, c_out) * node.sigma_b2**0.5
    tap_scale = torch.tensor(v, dtype=build.dtype, device=build.device) * node.sigma_w2 / c_in
    scales = {"weight": tap_scale.reshape(1, 1, *node.kernel), "bias": node.sigma_b2}
    layer = ConvLayer(torch.stack(kernels), bias, scales, node.path + suffix, node.stride)
    return layer, (c_out, *(n // node.stride for n in in_shape[1:]))


def fc_map(node: Conv) -> WeightMap:
    """On translation-invariant inputs (every pixel the same variance and every pixel pair of
    two inputs the same covariance) A_v ⋆ keeps them so (v sums to 1): the pixel-diagonal of
    xiao2018 eq. 2.3 is the dense layer's map with the conv's σ's (xiao2018 §2.1.4)."""
    return WeightMap(node.sigma_w2, node.sigma_b2)


def per_pixel(node: Conv) -> bool:
    """Whether the conv acts on every pixel separately (all tap variance on one tap, e.g.
    Delta-Orthogonal): then each pixel follows the dense layer's map whatever the input."""
    return max(tap_variances(node)) == 1.0


# --- symbolic rule ------------------------------------------------------------------------


def symbolic(node: Conv, phi: Any, attrs: dict) -> tuple[dict, Any]:
    """xiao2018 eq. 2.3 / xiao_bahri eq. 31 with the spec's v written out:
    Kˡ⁺¹[α, α′] = σ_w² Σ_β v_β T(Kˡ)[α + β, α′ + β] + σ_b², Θ likewise; on
    translation-invariant inputs the q-map, c-map and χ₁ of a dense layer (xiao2018 §2.1.4);
    backward the transposed A_v (xiao2018 §A.1): G̃ˡ[γ, γ′] = σ_w² Σ_β v_β G̃ˡ⁺¹[γ + β, γ′ + β],
    and the weight-gradient norm C_in Σ G̃ˡ⁺¹[α, α′] Σ_β T[α − β, α′ − β] over every tap; the
    input noise nˡ⁺¹[α] = σ_w² Σ_β v_β nˡ[α + β] (``noise``). A stride s reads the stride-1
    result at pixel sα (backward: G̃ˡ⁺¹ sits on those pixels)."""
    import sympy as sp

    from workbench import notation as n
    from workbench.gaussian.symbolic import number
    from workbench.nodes.dense import weight_layer_symbolic

    sw2, sb2 = number(node.sigma_w2), number(node.sigma_b2)
    rules = weight_layer_symbolic(node.sigma_w2, node.sigma_b2, attrs["in_shape"][0], phi)
    dims = len(node.kernel)
    first, second = [n.alpha], [n.alpha2]
    if dims > 1:
        first = [sp.Symbol(rf"\alpha_{{{i}}}", integer=True) for i in range(1, dims + 1)]
        second = [sp.Symbol(rf"\alpha'_{{{i}}}", integer=True) for i in range(1, dims + 1)]
    shifted = [
        (
            number(v),
            [a - o for a, o in zip(first, offsets)],
            [a - o for a, o in zip(second, offsets)],
        )
        for offsets, v in conv_taps(node)
        if v != 0
    ]  # offsets are np.roll's: tap β reads pixel α − offset

    def a_v(f):
        return sum(v * f(*i, *j) for v, i, j in shifted)

    out = (*first, *second)

    def moved(offsets, sign):
        return (*[a + sign * o for a, o in zip(first, offsets)],
                *[a + sign * o for a, o in zip(second, offsets)])  # fmt: skip

    taps = conv_taps(node)
    back = sum(number(v) * n.G_out_px[moved(offs, 1)] for offs, v in taps if v != 0)
    noise = sum(number(v) * n.n_in_px[tuple(a - o for a, o in zip(first, offs))]
                for offs, v in taps if v != 0)  # fmt: skip
    plain = sum(n.T(*moved(offs, -1)) for offs, _ in taps)  # zero-variance taps get gradients
    pixels = [(a, 0, size - 1) for a, size in zip(out, (*attrs["in_shape"][1:],) * 2)]
    gradient = attrs["in_shape"][0] * sp.Sum(n.G_out_px[out] * plain, *pixels, *n.input_pairs)
    rules.update(
        {
            "backward": sp.Eq(sp.IndexedBase(r"\tilde{G}^{l}")[out], sw2 * back),
            "weight_gradient": sp.Eq(n.grad_w, gradient),
            "noise": sp.Eq(sp.IndexedBase(r"n^{l+1}_{a}")[tuple(first)], sw2 * noise),
            "nngp": sp.Eq(sp.IndexedBase("K^{l+1}")[out], sw2 * a_v(n.T) + sb2),
            "ntk": sp.Eq(
                sp.IndexedBase(r"\Theta^{l+1}")[out],
                sp.IndexedBase("K^{l+1}")[out]
                + sw2 * a_v(lambda *ij: n.T_dot(*ij) * n.Theta_in[ij]),
            ),
            "v": sp.Eq(
                sp.Symbol("v"),
                sp.Matrix([number(v) for v in tap_variances(node)]).reshape(*node.kernel)
                if len(node.kernel) == 2
                else sp.Matrix([[number(v) for v in tap_variances(node)]]),
                evaluate=False,
            ),
        }
    )
    if node.stride > 1:  # the output pixel α is the stride-1 result's pixel sα
        scaled = {a: node.stride * a for a in out}
        for key in ("nngp", "ntk", "noise"):
            rules[key] = sp.Eq(rules[key].lhs, rules[key].rhs.xreplace(scaled))
        rules["stride"] = sp.Eq(sp.Symbol("s"), node.stride)
    return rules, None
