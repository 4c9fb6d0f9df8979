"""The critical-initialisation solver: the (σ_w², σ_b²) that put a spec's repeat block on the
critical line χ₁ = 1 (pabari_zhou eqs. 23–24, xiao2018 §2.3), at a requested q* or σ_b², or at
a requested correlation depth scale ξ_c (ordered side). The answer is written into the spec's
``defaults`` and vouched for by analysing the tuned spec again."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scipy.optimize import brentq

from workbench.errors import TheoryError, WorkbenchError
from workbench.theory.fc_maps import FCStep

CHI_TOLERANCE = 1e-10  # |χ₁ − 1| the tuned spec must show when analysed again
Q_TOLERANCE = 1e-6  # relative; on the critical line q* is approached slowly (χ_q near 1)


@dataclass
class Tuned:
    """The tuned variances, the block they were tuned for and what its analysis shows."""

    spec: str
    block: str
    target: str
    sigma_w2: float | None
    sigma_b2: float | None
    analysis: dict
    data: Any = field(repr=False, default=None)  # the tuned spec's data
    gamma: float | None = None  # the batch norms' γ, when tuned with --gamma
    notes: tuple[str, ...] = ()  # what the solution means where the target is a limit

    def to_dict(self) -> dict:
        out = {"spec": self.spec, "block": self.block, "target": self.target,
               "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2}  # fmt: skip
        if self.gamma is not None:
            out["gamma"] = self.gamma
        return {**out, "analysis": self.analysis, "notes": list(self.notes)}

    def summary(self) -> str:
        """What the tuned spec's own analysis shows, in one line."""
        a = self.analysis
        keys = ("chi_1", "q_star", "xi_c", "phase")
        return ", ".join(f"{k} = {a.get(k)!r}" for k in keys if k in a)


def tune_spec(spec_file: str | Path, target: str = "critical", q_star: float | None = None,
              sigma_b2: float | None = None, block: str | None = None,
              gamma: bool = False) -> Tuned:  # fmt: skip
    """Solve for the spec's defaults.sigma_w2 (and sigma_b2 with ``q_star``), or with
    ``gamma`` for the γ of a batch-normalised block's batch norms; ``target`` is ``critical``
    (χ₁ = 1), ``chi_1=X`` (χ₁ = X) or ``xi_c=N`` (ξ_c = N, ordered side)."""
    from workbench.compile import spec_from_dict
    from workbench.compile.load import read_spec_data
    from workbench.nodes.base import has_batch_statistics

    raw, lines = read_spec_data(spec_file)
    spec = spec_from_dict(raw, file=str(spec_file), lines=lines)
    chosen = _block(spec, block)
    if q_star is not None and sigma_b2 is not None:
        raise WorkbenchError("give --q-star or --sigma-b2, not both")
    key, value = _parse_target(target)
    if has_batch_statistics(chosen.body):
        from workbench.tune_gamma import tune_gamma

        if not gamma:
            raise WorkbenchError(
                f"{chosen.path}: the block batch-normalises, so sigma_w2 and sigma_b2 do not "
                "move its chi_1 (the data distribution's statistics reset every unit's "
                "variance to gamma^2)",
                hint="tune its batch norms' gamma with --gamma",
            )
        if q_star is not None or sigma_b2 is not None or key != "chi_1":
            raise WorkbenchError("--gamma tunes chi_1 only",
                                 hint="use --target critical or chi_1=X, without "
                                 "--q-star/--sigma-b2")  # fmt: skip
        return tune_gamma(spec_file, raw, lines, spec, chosen, target, value)
    if gamma:
        raise WorkbenchError(f"{chosen.path}: --gamma tunes a batch norm's gamma, and the "
                             "block has no batch norm")  # fmt: skip
    steps = _steps(chosen)
    if q_star is not None:
        if (key, value) != ("chi_1", 1.0):
            raise WorkbenchError("--q-star tunes for the critical line only",
                                 hint="use --sigma-b2 with --target xi_c=N or chi_1=X")  # fmt: skip
        sw2, sb2 = _through_q_star(steps, q_star)
    else:
        sb2 = float(steps[0].sigma_b2 if sigma_b2 is None else sigma_b2)
        if not (math.isfinite(sb2) and sb2 >= 0):
            raise WorkbenchError(f"sigma_b2 must be a finite number >= 0, got {sb2}")
        sw2 = _solve_sigma_w2(steps, sb2, key, value)
    tuned = _with_defaults(raw, sw2, sb2)
    analysis = _vouch(spec_from_dict(tuned, file=str(spec_file), lines=lines), chosen.path,
                      sw2, q_star, key, value)  # fmt: skip
    return Tuned(str(spec_file), chosen.path, target, sw2, sb2, analysis, tuned)


def _block(spec: Any, path: str | None) -> Any:
    from workbench.nodes.base import blocks

    found = list(blocks(spec.layers))
    if path is not None:
        found = [b for b in found if b.path == path]
        if not found:
            raise WorkbenchError(f"the spec has no repeat block at {path}")
    if len(found) != 1:
        paths = ", ".join(b.path for b in found) or "none"
        raise WorkbenchError(f"tune needs one repeat block, the spec has {len(found)} ({paths})",
                             hint="name one with --block PATH")  # fmt: skip
    return found[0]


def _steps(block: Any) -> tuple[FCStep, ...]:
    from workbench.errors import UnsupportedError
    from workbench.theory.fc_maps import body_steps

    try:
        steps = body_steps(block.body)
    except UnsupportedError as err:
        raise WorkbenchError(f"{block.path}: tune solves blocks of dense/conv and act layers "
                             f"only: {err.message}") from None  # fmt: skip
    return steps


def _parse_target(target: str) -> tuple[str, float]:
    """``critical`` → ("chi_1", 1); ``chi_1=X`` and ``xi_c=N`` (X, N > 0) → (key, value)."""
    if target == "critical":
        return "chi_1", 1.0
    key, _, value = target.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if key not in ("xi_c", "chi_1") or not (math.isfinite(number) and number > 0):
        raise WorkbenchError(f"unknown target {target!r}",
                             hint="use critical, chi_1=X or xi_c=N with X, N > 0")  # fmt: skip
    return key, number


def _with_sigmas(steps: tuple[FCStep, ...], sw2: float, sb2: float) -> tuple[FCStep, ...]:
    return tuple(replace(s, sigma_w2=sw2, sigma_b2=sb2) for s in steps)


def _analysis(steps: tuple[FCStep, ...]) -> Any:
    from workbench.theory.fc_fixed_points import analyze_cycle

    return analyze_cycle(steps)


def _through_q_star(steps: tuple[FCStep, ...], q: float) -> tuple[float, float]:
    """One step [dense, act]: χ₁ = σ_w² E[φ'(u)²] = 1 and q = σ_w² E[φ(u)²] + σ_b² at
    u ~ N(0, q) give σ_w² = 1/E[φ'²] and σ_b² = q − E[φ²]/E[φ'²] (pabari_zhou eqs. 23–24)."""
    from workbench.precision import F64
    from workbench.theory.critical import moments

    if len(steps) != 1:
        raise WorkbenchError("--q-star needs a body of one dense layer and its activation",
                             hint="use --sigma-b2 for longer bodies")  # fmt: skip
    if not (math.isfinite(q) and q > 0):
        raise WorkbenchError(f"--q-star must be a positive number, got {q}")
    phi = steps[0].phi
    e_phi2, e_dphi2 = (float(m) for m in moments(phi, q, F64))
    if not e_dphi2 > 0:
        raise TheoryError(f"E[{phi.name}'(u)^2] = 0 at q = {q}: no critical point")
    sw2, sb2 = 1 / e_dphi2, q - e_phi2 / e_dphi2
    if sb2 < 0:
        raise TheoryError(
            f"no bias variance puts q* = {q} on the critical line of {phi.name}: it would "
            f"need sigma_b2 = {sb2:.6g} < 0",
            hint="choose a larger --q-star, or --sigma-b2",
        )
    return sw2, sb2


def _solve_sigma_w2(steps: tuple[FCStep, ...], sb2: float, key: str, value: float) -> float:
    """σ_w² with χ₁ = X (or 1/ξ_c = 1/N, ordered side) at the attracting q*, by bracketing."""
    if key == "chi_1" and value != 1:
        return _root(lambda sw2: _chi_1(steps, sw2, sb2) - value, f"chi_1 = {value}", steps, sb2)
    if len(steps) == 1:  # the critical line's own solver: repelling, homogeneous, q* → 0
        from workbench.theory.critical import critical_point

        critical = float(critical_point(steps[0].phi, sb2).sigma_w2)
    else:
        critical = _root(lambda sw2: _chi_1(steps, sw2, sb2) - 1, "chi_1 = 1", steps, sb2)
    if key == "chi_1":
        return critical
    xi = value

    def inverse_xi(sw2: float) -> float:
        found = _analysis(_with_sigmas(steps, sw2, sb2))  # xi_c None: infinite (critical)
        return (0.0 if found.xi_c is None else 1 / float(found.xi_c)) - 1 / xi

    lo = critical * 1e-3
    if inverse_xi(lo) <= 0:
        raise TheoryError(f"xi_c = {xi} is below xi_c at sigma_w2 = {lo:.3g}",
                          hint="ask for a larger depth scale")  # fmt: skip
    return brentq(inverse_xi, lo, critical, xtol=1e-15 * critical, rtol=1e-15, maxiter=500)


def _chi_1(steps: tuple[FCStep, ...], sw2: float, sb2: float) -> float:
    found = _analysis(_with_sigmas(steps, sw2, sb2))
    if found.chi_1 is None:
        return math.inf  # q* diverges: far on the chaotic side
    return float(found.chi_1)


def _root(func: Callable[[float], float], what: str, steps: Any, sb2: float) -> float:
    lo, hi = 1e-3, 1.0
    while func(hi) < 0:
        hi *= 2
        if hi > 1e6:
            raise TheoryError(
                f"no sigma_w2 up to 1e6 gives {what} at sigma_b2 = {sb2}",
                hint="`workbench phase-diagram` shows where a critical line is",
            )
    if func(lo) > 0:
        raise TheoryError(f"{what} already exceeded at sigma_w2 = {lo} (sigma_b2 = {sb2})")
    return brentq(func, lo, hi, xtol=1e-15 * hi, rtol=1e-15, maxiter=500)


def _with_defaults(raw: Any, sw2: float, sb2: float) -> Any:
    from workbench.sweep.grid import unshared

    data = unshared(raw)
    data["defaults"] = {**(data.get("defaults") or {}), "sigma_w2": sw2, "sigma_b2": sb2}
    return data


def _vouch(spec: Any, path: str, sw2: float, q_star: float | None, key: str,
           value: float) -> dict:  # fmt: skip
    """The tuned spec analysed again: its block must use the tuned σ_w² and land on the target."""
    block = _block(spec, path)
    if any(float(s.sigma_w2) != sw2 for s in _steps(block)):
        raise WorkbenchError(f"{path}: a layer of the block sets its own sigma_w2, so the "
                             "spec's defaults do not reach it",
                             hint="remove sigma_w2/sigma_b2 from the block's layers")  # fmt: skip
    found = vouched(spec, path, key, value)
    if q_star is not None and not abs(found["q_star"] / q_star - 1) <= Q_TOLERANCE:
        raise TheoryError(f"the tuned spec's analysis settles at q* = {found['q_star']!r}, "
                          f"not {q_star}", hint="choose another --q-star")  # fmt: skip
    return found


def vouched(spec: Any, path: str, key: str, value: float) -> dict:
    """The analysis of ``path`` in the tuned spec, which must show χ₁ = X to CHI_TOLERANCE
    (or ξ_c = N to 1e-8 relative)."""
    from workbench.analysis import analyze_spec

    found = next(b for b in analyze_spec(spec).to_dict()["blocks"] if b["path"] == path)
    got = found.get(key)
    if key == "chi_1" and not (got is not None and abs(got - value) <= CHI_TOLERANCE):
        raise TheoryError(f"the tuned spec's chi_1 is {got!r}, not {value} to "
                          f"{CHI_TOLERANCE:g}")  # fmt: skip
    if key == "xi_c" and not (got is not None and abs(got / value - 1) <= 1e-8):
        raise TheoryError(f"the tuned spec's xi_c is {got!r}, not {value}")
    return found


def write_tuned(tuned: Tuned, out: str | Path) -> Path:
    """The tuned spec as YAML, with a header saying how it was tuned."""
    import yaml

    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise WorkbenchError(f"-o must name a .yaml file, got {out}")
    header = (f"# tuned by `workbench tune` from {tuned.spec} (target {tuned.target}, block "
              f"{tuned.block}):\n# {tuned.summary()}\n")  # fmt: skip
    try:
        text = yaml.safe_dump(_plain(tuned.data), sort_keys=False, allow_unicode=True)
        out.write_text(header + text)
    except OSError as err:
        raise WorkbenchError(f"cannot write '{out}': {err.strerror or err}") from None
    return out


def _plain(data: Any) -> Any:
    """Spec data with the loader's number types (exact decimals) as plain int/float/str, for
    ``yaml.safe_dump``."""
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, bool) or data is None:
        return data
    if isinstance(data, int):
        return int(data)
    if isinstance(data, float):
        return float(data)
    return str(data)
