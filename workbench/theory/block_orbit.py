"""Analysis of a repeat block by iterating its own kernel rules (the blocks the
fully-connected cycle theory does not cover: batch norm, residual, layernorm bodies).

The block's body graph runs pass after pass, by the one evaluator, on a batch of B inputs of
the block's input shape, equicorrelated at the start (q⁰ = 1, c⁰ = C0), and the orbit of
the mean variance qˡ and mean correlation cˡ between distinct inputs is read off. Either
the orbit settles (a fixed point q*, c* of the block's map: for batch norm the BN rule's
fixed point for that batch size, mean_field_batchnorm §3) with the rate at which c
approaches c* per pass (its depth scale ξ_c = −1/log rate), or q keeps growing (a residual
stream: q^{l+1} = q^l + s² (body's variance) has no finite fixed point), and the result
states the growth law measured on the orbit (geometric ×r per pass, or power law q ∝ l^α)
and the approach of c to 1 (1 − cˡ ∝ l^{−β}, with the exponents fitted over the last half
of the orbit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.errors import TheoryError

C0 = 0.5  # starting correlation between distinct inputs
BATCH = 4  # inputs in the batch (batch norm's statistics run over them)
MAX_PASSES = 300
SETTLED = 1e-13  # relative change of q and c per pass below which the orbit has settled
GROWING = 1.0 + 1e-9  # q^L / q^{L/2} above this: the variance grows


@dataclass
class OrbitAnalysis:
    """One repeat block's orbit under its own rules. Depth scales count body passes."""

    path: str
    phase: str  # "fixed point" | "variance grows" | "variance vanishes"
    batch: int
    passes: int
    q_star: float | None = None
    c_star: float | None = None
    rate_c: float | None = None  # |c^{l+1} − c*| / |c^l − c*| at the end of the orbit
    xi_c: float | None = None
    growth: str | None = None  # the measured growth law of q, in words
    growth_rate: float | None = None  # q^{l+1}/q^l (geometric) or the exponent α (power law)
    one_minus_c: float | None = None  # 1 − c after the last pass
    c_exponent: float | None = None  # β in 1 − cˡ ∝ l^{−β}
    chi_1: float | None = None  # gradient growth per pass, population statistics (batch norm)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {"path": self.path, "phase": self.phase, "method": "iterated block rules",
               "batch": self.batch, "passes": self.passes}  # fmt: skip
        for name in ("q_star", "c_star", "rate_c", "xi_c", "chi_1", "growth", "growth_rate",
                     "one_minus_c", "c_exponent"):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _start(in_shape: tuple[int, ...], batch: int):
    """Realized features of ``batch`` inputs with exactly q = 1 per pixel and correlation C0
    between distinct inputs, the same at every pixel pair of one input pair."""
    from workbench.theory.state import KernelState

    m = batch
    base = np.full((m, m), C0) + (1 - C0) * np.eye(m)
    spatial = tuple(in_shape[1:])
    mode = "full" if spatial else "flat"
    n = int(np.prod(spatial)) if spatial else 1
    if spatial:  # pixel pairs of one input pair: the input's own kernel is C0-correlated too
        pixels = np.full((n, n), C0) + (1 - C0) * np.eye(n)
        nngp = np.einsum("ab,pq->abpq", base, pixels).reshape(m, m, *spatial, *spatial)
    else:
        nngp = base
    return KernelState(nngp, None, np.zeros((m, *spatial)), mode, spatial, in_shape[0])


def _q_and_c(state) -> tuple[float, float]:
    """Mean variance over inputs (and pixels), and the mean same-pixel correlation between
    distinct inputs."""
    k = np.asarray(state.same_pixel(state.nngp), float).reshape(state.m, state.m, -1)
    q = np.einsum("aap->ap", k)
    corr = k / np.sqrt(q[:, None, :] * q[None, :, :])
    off = ~np.eye(state.m, dtype=bool)
    return float(q.mean()), float(corr[off].mean())


def analyze_orbit(
    path: str, attrs: dict, times: int, batch: int = BATCH, progress: bool = False
) -> OrbitAnalysis:
    """Iterate the block's body graph (``attrs`` of its graph node) for up to
    min(times, MAX_PASSES) passes from an equicorrelated batch; see the module docstring.
    ``progress``: a tqdm bar over the passes, labelled by the block's path."""
    q, c = orbit(path, attrs, min(times, MAX_PASSES), batch, progress)
    if q[-1] == 0:
        return OrbitAnalysis(path, "variance vanishes", batch, len(q))
    return _summarise(path, batch, q, c, times)


def orbit(
    path: str, attrs: dict, passes: int, batch: int = BATCH, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """qˡ (mean over the batch and pixels) and cˡ (mean same-pixel correlation of distinct
    inputs) after each pass of the block's own rules, from the equicorrelated start; it stops
    early once both have settled (later passes repeat them) or the variance vanishes."""
    from tqdm import tqdm

    from workbench.theory.evaluate import Evaluator

    ev = Evaluator("ntk")
    again = attrs.get("body_again", attrs["body"])
    state = _start(tuple(attrs["body"].graph["input_shape"]), batch)
    qs, cs = [], []
    bar = tqdm(range(passes), desc=f"{path} orbit", disable=not progress, leave=False)
    with np.errstate(all="ignore"):
        for i in bar:
            state = ev.realized(ev.propagate(attrs["body"] if i == 0 else again, state))
            q, c = _q_and_c(state)
            if q == 0:
                qs.append(0.0)
                cs.append(0.0)
                break
            if not (np.isfinite(q) and np.isfinite(c)):
                raise TheoryError(f"{path}: the block's orbit is not finite after {i + 1} passes")
            qs.append(q)
            cs.append(c)
            if i >= 3 and _settled(qs[-3:]) and _settled(cs[-3:]):
                break
    return np.array(qs), np.array(cs)


def _settled(values: list[float]) -> bool:
    scale = max(abs(v) for v in values)
    return max(values) - min(values) <= SETTLED * max(scale, 1e-300)


def _summarise(path: str, batch: int, q: np.ndarray, c: np.ndarray, times: int) -> OrbitAnalysis:
    passes = len(q)
    notes = []
    if passes < times:
        notes.append(f"orbit followed for {passes} of the block's {times} passes")
    half = passes // 2
    if passes >= 8 and q[-1] > q[half] * GROWING:
        return _growing(path, batch, q, c, notes)
    if not (passes >= 4 and _settled(list(q[-3:]))):
        notes.append("the variance neither settled nor grew within the passes followed")
        return OrbitAnalysis(path, "undecided", batch, passes, notes=notes,
                             one_minus_c=float(1 - c[-1]))  # fmt: skip
    if _settled(list(c[-3:])):
        c_star, rate = float(c[-1]), _approach_rate(c)
    else:  # q has settled, c still moves: geometric approach, Aitken's estimate of c*
        step, previous = c[-1] - c[-2], c[-2] - c[-3]
        rate = float(step / previous) if previous != 0 else None
        if rate is None or not 0 < rate < 1:
            notes.append("the correlation has not settled and does not approach a limit "
                         "geometrically")  # fmt: skip
            return OrbitAnalysis(path, "undecided", batch, passes, float(q[-1]), notes=notes,
                                 one_minus_c=float(1 - c[-1]))  # fmt: skip
        c_star = float(c[-1] + step * rate / (1 - rate))
        notes.append(f"c* extrapolated from the last passes (Aitken): c = {c[-1]:.10g} after "
                     f"{passes} passes, approaching it ×{rate:.6g} per pass")  # fmt: skip
    xi = None if rate is None or not 0 < rate < 1 else float(-1 / np.log(rate))
    return OrbitAnalysis(path, "fixed point", batch, passes, float(q[-1]), c_star, rate, xi,
                         notes=notes)  # fmt: skip


def _growing(path: str, batch: int, q: np.ndarray, c: np.ndarray, notes: list) -> OrbitAnalysis:
    """The growth law of q, and the trend of c, fitted over the orbit's last half."""
    passes, half = len(q), len(q) // 2
    layers = np.arange(1, passes + 1, dtype=float)
    ratios = q[1:] / q[:-1]
    alpha = _slope(np.log(layers[half:]), np.log(q[half:]))
    if abs(ratios[-1] - ratios[half]) <= 1e-3 * ratios[-1] and ratios[-1] > 1.001:
        growth, rate = f"geometric: q × {ratios[-1]:.6g} per pass", float(ratios[-1])
    else:
        growth, rate = f"power law: q ∝ l^{alpha:.3g} (Δq = {q[-1] - q[-2]:.4g} per pass)", alpha
    gap = 1 - c
    beta = None
    if (gap[half:] > 0).all() and (np.diff(c[half:]) > 0).all():
        beta = -_slope(np.log(layers[half:]), np.log(gap[half:]))
        notes.append(f"the correlation approaches 1: 1 − c ∝ l^(−{beta:.3g}) over the last half")
    else:
        notes.append(f"the correlation drifts, c = {c[-1]:.6g} after {passes} passes "
                     f"(Δc = {c[-1] - c[-2]:.3g} per pass)")  # fmt: skip
    return OrbitAnalysis(path, "variance grows", batch, passes, growth=growth, growth_rate=rate,
                         one_minus_c=float(gap[-1]), c_exponent=beta, notes=notes)  # fmt: skip


def _approach_rate(c: np.ndarray) -> float | None:
    """|c^{l+1} − c*| / |c^l − c*| where the distance is still well above rounding."""
    gap = np.abs(c - c[-1])
    usable = np.flatnonzero(gap > 1e-8 * max(abs(c[-1]), 1e-300))
    if usable.size < 2 or usable[-1] == 0:
        return None
    i = usable[-1]
    return float(gap[i] / gap[i - 1]) if gap[i - 1] > 0 else None


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])
