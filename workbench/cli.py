"""The `workbench` command line: a thin layer over the Python API.

Every command takes --json (the results' ``to_dict()``); bad input exits 2 with a one-line
typed error and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError


def _digits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--digits takes an integer, got {text!r}") from None
    if not 5 <= value <= 1000:
        raise argparse.ArgumentTypeError("--digits must be between 5 and 1000")
    return value


DEFAULT_SECONDS = 600.0  # workbench.theory.pace.DEFAULT_SECONDS (tested equal)
BUDGET_HELP = (
    "refuse a deep repeat block projected to take longer than this on the general engine "
    "(default 600; 0: no limit)"
)


def _budget(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-seconds takes seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"--max-seconds must be 0 or more, got {text!r}")
    return None if value == 0 else value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _number(text: str) -> float:
    """A number from the command line, kept exact (``precision.ExactReal``) for --digits."""
    from workbench.precision import exact_real

    try:
        value = exact_real(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _grid(text: str) -> tuple[float, float, int]:
    parts = text.split(":")
    try:
        a, b, n = _number(parts[0]), _number(parts[1]), int(parts[2])
    except (ValueError, IndexError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected a:b:n (e.g. 0:0.3:31), got {text!r}") from None
    if len(parts) != 3 or n < 1 or a < 0 or b < a:
        raise argparse.ArgumentTypeError(f"expected 0 <= a <= b and n >= 1 in a:b:n, got {text!r}")
    return a, b, n


def _print_table(rows: list[dict], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.10g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def cmd_kinds(args: argparse.Namespace) -> dict:
    import workbench.nodes  # noqa: F401 - registers the kinds
    from workbench.errors import WorkbenchError
    from workbench.nodes.base import REGISTRY
    from workbench.nodes.catalog import describe_kind, describe_kinds
    from workbench.spec.fields import unknown_hint

    if args.kind is not None and args.kind not in REGISTRY:
        raise WorkbenchError(f"unknown node kind {args.kind!r}",
                        hint=unknown_hint(args.kind, list(REGISTRY), "kind"))  # fmt: skip
    kinds = describe_kinds() if args.kind is None else [describe_kind(args.kind)]
    if not args.json:
        for kind in kinds:
            bare = f" (or bare `- {kind['kind']}`)" if kind["bare"] else ""
            print(f"{kind['kind']}: {kind['summary']}\n  example: {kind['example']}{bare}")
            for key in kind["keys"]:
                choices = f" one of {', '.join(key['choices'])};" if key["choices"] else ""
                print(f"  {key['name']:10s} default {key['default']!s:18s}{choices} {key['doc']}")
    return {"kinds": kinds}


def cmd_check(args: argparse.Namespace) -> dict:
    from workbench.compile import load_spec
    from workbench.compile.summary import summarize, total_depth

    spec = load_spec(args.spec)
    stages = summarize(spec)
    result = {
        "spec": spec.name,
        "file": str(args.spec),
        "input_shape": list(spec.input_shape),
        "depth": total_depth(spec),
        "stages": stages,
    }
    if not args.json:
        print(f"{spec.name}: valid; input {list(spec.input_shape)}, depth {result['depth']}")
        _print_table(
            stages,
            [
                "path",
                "kind",
                "in_shape",
                "out_shape",
                "sigma_w2",
                "sigma_b2",
                "activation",
                "times",
                "depth",
            ],
        )
    return result


def cmd_analyze(args: argparse.Namespace) -> dict:
    from workbench.analysis import analyze_spec
    from workbench.compile import load_spec
    from workbench.precision import context

    spec = load_spec(args.spec)
    result = analyze_spec(spec, context(args.digits), progress=sys.stderr.isatty()).to_dict()
    if args.check_precision:
        from workbench.theory.check_precision import check_analyze

        result["precision_check"] = _precision_check(args, lambda: check_analyze(spec, result))
    if not args.json:
        print(f"{result['spec']} ({result['precision']})")
        cycles = [b for b in result["blocks"] if "method" not in b]
        orbits = [b for b in result["blocks"] if "method" in b]
        if cycles:
            _print_table(
                cycles,
                ["path", "phase", "q_star", "c_star", "chi_1", "chi_q", "chi_c", "xi_q", "xi_c"],
            )
        if orbits:
            print("blocks analysed by iterating their own rules (batch norm, residual, ...):")
            _print_table(orbits, ["path", "phase", "batch", "passes", "q_star", "c_star",
                                  "xi_c", "chi_1", "growth"])  # fmt: skip
        for block in result["blocks"]:
            for note in block.get("notes", []):
                print(f"  {block['path']}: {note}")
        for skipped in result["skipped"]:
            print(f"  skipped {skipped['path']}: {skipped['reason']}")
        _print_precision_check(result)
    return result


CHECK_PRECISION_HELP = "state the float64 result's error: rerun at 32 digits and compare"


def _precision_check(args: argparse.Namespace, run: Callable[[], dict]) -> dict:
    """``--check-precision``: only float64 results have an error to state."""
    if args.digits:
        return {"unavailable": "the result is already computed with --digits"}
    return run()


def _print_precision_check(result: dict) -> None:
    check = result.get("precision_check")
    if not check:
        return
    if "unavailable" in check:
        print(f"precision check: unavailable ({check['unavailable']})")
    else:
        worst, count = check["worst_relative_difference"], check["compared"]
        print(f"precision check against {check['reference']}: worst relative difference "
              f"{worst:.3g} over {count} numbers")  # fmt: skip


def cmd_critical(args: argparse.Namespace) -> dict:
    from workbench.activations import parse_activation
    from workbench.precision import context
    from workbench.theory.critical import critical_point

    point = critical_point(parse_activation(args.activation), args.sigma_b2, context(args.digits))
    result = point.to_dict()
    if not args.json:
        _print_table([result], ["activation", "sigma_b2", "sigma_w2", "q_star", "note"])
    return result


def cmd_phase_diagram(args: argparse.Namespace) -> dict:

    from workbench.activations import parse_activation
    from workbench.plots import check_phase_diagram_path, write_phase_diagram
    from workbench.precision import context, exact_grid
    from workbench.theory.critical import critical_line

    if args.out:
        check_phase_diagram_path(Path(args.out))
    grid = exact_grid(*args.sigma_b2)
    phi = parse_activation(args.activation)
    points = critical_line(phi, grid, context(args.digits), progress=not args.json)
    rows = [p.to_dict() for p in points]
    result = {"activation": phi.name, "points": rows}
    if args.out:
        result["out"] = str(write_phase_diagram(points, Path(args.out)))
    if not args.json:
        _print_table(rows, ["sigma_b2", "sigma_w2", "q_star", "note"])
        if args.out:
            print(f"wrote {result['out']}")
    return result


def cmd_validate(args: argparse.Namespace) -> dict:
    from workbench.validation.runner import run_suite

    suite = run_suite(args.suite, args.device, args.quick, progress=not args.json)
    result = suite.to_dict()
    if not args.json:
        print(f"{suite.name} on {suite.device}{' (quick)' if suite.quick else ''}")
        rows = [
            {
                "check": c.name,
                "theory": f"{c.theory:.6g}",
                "monte-carlo": f"{c.mc_mean:.6g} ± {c.mc_ci:.2g}",
                "allowance": f"{c.allowance:.2g}",
                "passed": "pass" if c.passed else "FAIL",
                "seconds": f"{c.seconds:.1f}",
            }
            for c in suite.checks
        ]
        _print_table(rows, ["check", "theory", "monte-carlo", "allowance", "passed", "seconds"])
        for c in suite.checks:
            if c.error:
                print(f"FAIL {c.name}: could not run: {c.error}")
        print("all checks passed" if suite.passed else "some checks FAILED")
    args.exit_code = 0 if suite.passed else 1
    return result


def cmd_kernel(args: argparse.Namespace) -> dict:
    import statistics
    import time

    import numpy as np

    from workbench.compile import load_spec
    from workbench.theory.evaluate import network_kernels

    spec = load_spec(args.spec)
    x = _load_array(args.inputs, "--inputs", spec)
    m = x.shape[0]
    if args.x2 is not None:
        x = np.concatenate([x, _load_array(args.x2, "--x2", spec)])
    get = {g.strip() for g in args.get.split(",") if g.strip()}
    if not get <= {"nngp", "ntk"} or not get:
        raise WorkbenchError(f"--get takes nngp and/or ntk, got {args.get!r}")
    out_path = Path(args.out)
    if out_path.suffix != ".npz":
        raise WorkbenchError(f"--out must be a .npz file, got {out_path}")

    def evaluate():
        return network_kernels(spec, x, "ntk" in get, args.parameterization, digits=args.digits,
                               compiled=args.compile, progress=sys.stderr.isatty())  # fmt: skip

    compile_seconds = None
    if args.compile:  # the first call compiles; the timed calls below run the compiled code
        start = time.perf_counter()
        evaluate()
        compile_seconds = time.perf_counter() - start
    times, result = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = evaluate()
        times.append(time.perf_counter() - start)
    check = None
    if args.check_precision:
        from workbench.theory.check_precision import check_kernel

        check = _precision_check(args, lambda: check_kernel(
            spec, x, result, "ntk" in get, args.parameterization))  # fmt: skip
    arrays = {"nngp": result.nngp, "ntk": result.ntk, "one_minus_c": result.one_minus_c}
    if result.one_minus_c is not None:
        get.add("one_minus_c")
    saved = {}
    for name in sorted(get):
        k = arrays[name]
        if args.x2 is not None:
            saved[f"{name}_x2_x2"] = k[m:, m:]
            saved[f"{name}_x1_x2"] = k[:m, m:]
            k = k[:m, :m]
        saved[name] = k
    stored = {k: np.asarray(v, dtype=float) for k, v in saved.items()}
    beyond = sorted(k for k, v in stored.items() if not np.isfinite(v).all())
    notes = list(result.notes)
    if beyond:  # only with --digits: a float64 result that overflows raised before
        notes.append(f"{', '.join(beyond)} exceed float64's range: stored only as decimal "
                     "strings ('<name>_decimal'), never as inf")  # fmt: skip
        stored = {k: v for k, v in stored.items() if k not in beyond}
    if args.digits:  # the values as computed, beside their float64 roundings
        stored.update({f"{k}_decimal": _decimal_strings(v, args.digits) for k, v in saved.items()})
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out_path, **stored)
    except OSError as err:
        raise WorkbenchError(f"cannot write '{out_path}': {err.strerror or err}") from None
    summary = {
        "spec": spec.name,
        "out": str(out_path),
        "arrays": {k: list(v.shape) for k, v in stored.items()},
        "parameterization": args.parameterization,
        "mode": result.mode,
        "notes": notes,
        "seconds": statistics.median(times),
        "repeat": args.repeat,
    }
    if compile_seconds is not None:
        summary["compile_seconds"] = compile_seconds
    if check is not None:
        summary["precision_check"] = check
    if args.digits:
        summary["digits"] = args.digits
        summary["note"] = (
            f"each array is stored twice: float64 roundings, and as '<name>_decimal' strings "
            f"of {args.digits} significant digits (mpmath.mpf reads them). The inputs are "
            "float64 values from the .npy, taken as the exact binary fractions they hold"
        )
    if not args.json:
        shapes = ", ".join(f"{k} {v}" for k, v in summary["arrays"].items())
        print(f"{spec.name}: wrote {out_path} ({shapes})")
        print(f"median of {args.repeat}: {summary['seconds']:.4f} s")
        for note in summary["notes"]:
            print(f"note: {note}")
        _print_precision_check(summary)
    return summary


def _decimal_strings(values: Any, digits: int) -> Any:
    """An array of numbers as decimal strings of ``digits`` significant digits."""
    import mpmath
    import numpy as np

    with mpmath.workdps(digits + 5):  # mpf() rounds to the working precision
        text = [mpmath.nstr(mpmath.mpf(v), digits, strip_zeros=False) for v in np.ravel(values)]
    return np.array(text, dtype=str).reshape(np.shape(values))


def _load_array(path: Path, flag: str, spec: Any):
    """A batch of inputs (m ≥ 1, *spec.input_shape) of real numbers from a .npy file; anything
    else (an .npz archive, an empty or unreadable file, a 0-d or empty array, complex, text or
    date values, another shape, non-finite entries) is a WorkbenchError naming the file."""
    import numpy as np

    expected = f"(m, {', '.join(map(str, spec.input_shape))})"
    try:
        if path.is_dir() or (path.exists() and not path.is_file()):
            raise ValueError("not a regular file")
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise WorkbenchError(
            f"{flag} {path}: cannot read a .npy array ({err})",
            hint=f"save one array of shape {expected} with numpy.save",
        ) from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise WorkbenchError(
            f"{flag} {path}: an .npz archive, not one array",
            hint=f"save one array of shape {expected} with numpy.save",
        )
    if array.dtype.kind not in "iuf":
        raise WorkbenchError(f"{flag} {path}: its values are {array.dtype} (need real numbers)",
                             hint="save float64 values")  # fmt: skip
    if array.ndim < 1 or array.shape[1:] != tuple(spec.input_shape) or array.shape[0] < 1:
        shape = list(spec.input_shape)
        raise WorkbenchError(f"{flag} {path}: shape {array.shape}, expected {expected}, m ≥ 1",
                             hint=f"the spec's input shape is {shape}")  # fmt: skip
    array = array.astype(float)
    if not np.isfinite(array).all():
        raise WorkbenchError(f"{flag} {path}: non-finite entries (nan or inf)")
    return array


def _data_set(spec: Any, args: argparse.Namespace) -> tuple[Any, str]:
    """The inputs of ``--inputs X.npy``, else ``--m`` random ones of seed ``--seed``, and how
    the output names them."""
    if args.inputs is not None:
        return _load_array(args.inputs, "--inputs", spec), str(args.inputs)
    from workbench.validation.quantities import make_inputs

    x = make_inputs(spec, {"count": args.m, "seed": args.seed}).numpy()
    return x, f"{args.m} random (seed {args.seed})"


def cmd_gradients(args: argparse.Namespace) -> dict:
    from workbench.compile import load_spec
    from workbench.theory.backward import gradient_profile

    spec = load_spec(args.spec)
    x, described = _data_set(spec, args)
    profile = gradient_profile(spec, x, digits=args.digits, bn_statistics=args.bn_statistics)
    result = profile.to_dict()
    result["inputs"] = described
    if not args.json:
        print(f"{spec.name}: predicted weight-gradient norms for L = sum_b <r, f(x_b)> "
              f"({result['inputs']}, {result['precision']})")  # fmt: skip
        _print_table(result["layers"], ["path", "grad_norm2", "ratio", "log_ratio",
                                        "rate_to_next", "q_tilde"])  # fmt: skip
        for note in result["notes"]:
            print(f"note: {note}")
    return result


def cmd_moments(args: argparse.Namespace) -> dict:
    from workbench.compile import load_spec
    from workbench.theory.moments import moment_profile

    spec = load_spec(args.spec)
    x, described = _data_set(spec, args)
    profile = moment_profile(spec, x, digits=args.digits)
    result = profile.to_dict()
    result["inputs"] = described
    comparison = None
    if args.simulate:
        from workbench.validation.sensitivity import (
            build_moment_network,
            compare,
            log_diffusion,
            measure_moments,
        )

        net = build_moment_network(spec, args.width, args.networks, args.seed, args.device)
        measured = measure_moments(net, x, args.seed)
        comparison = compare(profile, measured)
        result["monte_carlo"] = {
            "width": args.width,
            "networks": args.networks,
            "bn_statistics": "fixed (the paper's test mode)",
            "layers": comparison,
            "log_diffusion": log_diffusion(profile, measured),
        }
        _add_measured_power_law(result, profile, measured)
    if args.out:
        from workbench.plots import sensitivity

        sensitivity(profile, comparison, spec.name, Path(args.out))
        result["out"] = args.out
    if not args.json:
        _print_moments(result)
    return result


def _add_measured_power_law(result: dict, profile: Any, measured: Any) -> None:
    """For residual networks, the simulated χˡ's power-law exponent (fitted per network over
    the same units as the theory's) beside the theory's."""
    from workbench.validation.sensitivity import fitted_tau

    law = result.get("power_law")
    if law is not None:
        taus = fitted_tau(profile, measured)
        law["monte_carlo_tau_fit"] = {"mean": float(taus.mean()),
                                      "se": float(taus.std(ddof=1) / len(taus) ** 0.5)}  # fmt: skip


def _print_moments(result: dict) -> None:
    print(f"{result['spec']}: normalised sensitivity per layer, wide limit (labatie2019; "
          f"inputs {result['inputs']}, {result['precision']})")  # fmt: skip
    _print_table(result["layers"], ["path", "chi", "delta_chi", "delta_chi_bn", "delta_chi_phi",
                                    "r_eff", "regime"])  # fmt: skip
    law = result.get("power_law")
    if law is not None:
        theorem = law.get("tau_theorem4", float("nan"))
        print(f"power law chi ~ l^tau over {law['units']} residual units: fitted tau = "
              f"{law['tau_fit']:.4g}; Theorem 4's 1/2(<delta chi>^(2H) - 1) = {theorem:.4g} "
              "(the l -> infinity exponent)")  # fmt: skip
    mc = result.get("monte_carlo")
    if mc is not None:
        print(f"Monte-Carlo: {mc['networks']} networks of width {mc['width']} "
              f"(batch norm statistics fixed), mean +- standard error; r_eff reaches its "
              f"wide limit only for widths far above the number of inputs")  # fmt: skip
        rows = []
        for layer in mc["layers"]:
            row = {"path": layer["path"]}
            for key in ("chi", "delta_chi", "delta_chi_bn", "delta_chi_phi", "r_eff"):
                th, sim = layer["theory"][key], layer["monte_carlo"][key]
                row[key] = "—" if th is None or sim is None else (
                    f"{th:.4g} | {sim['mean']:.4g}+-{sim['se']:.2g}")  # fmt: skip
            rows.append(row)
        _print_table(rows, ["path", "chi", "delta_chi", "delta_chi_bn", "delta_chi_phi", "r_eff"])
        for name, fit in mc["log_diffusion"].items():
            if isinstance(fit, dict):
                print(f"{name} minus its wide-limit value: drift {fit['drift_per_layer']:.3g} "
                      f"per layer, diffusion {fit['diffusion_per_layer']:.3g} per layer "
                      f"(labatie2019 Theorem 1)")  # fmt: skip
        if law is not None and "monte_carlo_tau_fit" in law:
            fit = law["monte_carlo_tau_fit"]
            print(f"Monte-Carlo tau = {fit['mean']:.4g} +- {fit['se']:.2g}")
    for note in result["notes"]:
        print(f"note: {note}")
    if "out" in result:
        print(f"wrote {result['out']}")


def cmd_fisher(args: argparse.Namespace) -> dict:
    import numpy as np

    from workbench.compile import load_spec
    from workbench.theory.fisher import fisher_bounds, gamma_sweep

    spec = load_spec(args.spec)
    options: dict[str, Any] = {"momentum": args.momentum, "statistics": "population"}
    if args.inputs is not None or args.batch_size is not None:
        if args.inputs is not None:
            x = _load_array(args.inputs, "--inputs", spec)
        else:
            x = np.random.default_rng(args.seed).standard_normal((args.batch_size,
                                                                   *spec.input_shape))  # fmt: skip
        options.update(inputs=x, statistics=args.bn_statistics)
    elif args.bn_statistics == "batch":
        raise WorkbenchError(
            "--bn-statistics batch needs a batch: give --batch-size M or --inputs X.npy "
            "(the paper's model holds the statistics fixed)"
        )
    if args.sweep is None:
        result = fisher_bounds(spec, **options).to_dict()
        if not args.json:
            print(f"{spec.name}: lambda_max in [{result['lambda_max_lower']:.6g}, "
                  f"{result['lambda_max_upper']:.6g}], eta_max = {result['eta_max']:.6g} "
                  f"(momentum {args.momentum}; {_fisher_model(options)})")  # fmt: skip
            _print_table(result["layers"], ["path", "kind", "f_l", "f_l_upper"])
        return result
    key, grid = args.sweep
    sweep = gamma_sweep(spec, list(np.linspace(*grid[:2], grid[2])), **options)
    result = sweep.to_dict()
    if args.out:
        from workbench.plots import fisher_sweep

        fisher_sweep(sweep, spec.name, Path(args.out))
        result["out"] = args.out
    if not args.json:
        print(f"{spec.name}: Fisher bounds against gamma ({_fisher_model(options)})")
        _print_table([{"gamma": r["gamma"], "lambda_max_lower": r["lambda_max_lower"],
                       "lambda_max_upper": r["lambda_max_upper"], "eta_max": r["eta_max"]}
                      for r in result["rows"]],
                     ["gamma", "lambda_max_lower", "lambda_max_upper", "eta_max"])  # fmt: skip
        if sweep.vanilla is not None:
            v = sweep.vanilla
            print(f"vanilla: lambda_max in [{v.lower:.6g}, {v.upper:.6g}], eta_max {v.eta_max:.6g}")
    return result


def _fisher_model(options: dict) -> str:
    if options["statistics"] == "population":
        return "the paper's model: i.i.d. inputs, batch norm statistics of the data fixed"
    return (
        f"a batch of {len(options['inputs'])} inputs, batch norm statistics {options['statistics']}"
    )


def _gamma_sweep(text: str) -> tuple[str, tuple[float, float, int]]:
    key, _, grid = text.partition("=")
    if key.strip() != "gamma" or not grid:
        raise argparse.ArgumentTypeError(f"expected gamma=a:b:n, got {text!r}")
    return "gamma", _grid(grid)


def cmd_derive(args: argparse.Namespace) -> dict:
    from workbench.compile import load_spec
    from workbench.theory.derive import derive

    derivation = derive(load_spec(args.spec))
    result = derivation.to_dict(latex=True)
    if not args.json:
        shown = result if args.latex else derivation.to_dict(latex=False)
        print(f"{derivation.spec}: the recursion each stage applies (pair a, b of inputs)")
        for stage in shown["stages"]:
            print(f"\n{stage['path']} ({stage['kind']})")
            for name, text in stage["rules"].items():
                print(f"  {name}: {text}")
    return result


def cmd_report(args: argparse.Namespace) -> dict:
    from workbench.report import write_report

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    command = "workbench " + " ".join(sys.argv[1:]) if sys.argv[1:] else "workbench report"
    files = write_report(args.spec, args.out, formats, args.digits, args.seed, command,
                         progress=sys.stderr.isatty(), validate=args.validate,
                         sweep=args.sweep)  # fmt: skip
    result = files.to_dict()
    if not args.json:
        main_file = next((f for f in files.files if f.suffix == ".html"), files.files[0])
        print(f"report written to {files.directory}/ — open {main_file}")
        for line in files.sections_left_out:
            print(f"  left out: {line}")
    return result


def cmd_modes(args: argparse.Namespace) -> dict:
    from workbench.compile import load_spec
    from workbench.theory.spectrum import conv_modes

    tables = conv_modes(load_spec(args.spec))
    result = {"blocks": [t.to_dict() for t in tables]}
    if not args.json:
        for table in tables:
            print(f"{table.path}: chi_c* = {table.chi_c:.10g}")
            _print_table(table.modes, ["frequency", "lambda", "xi"])
    return result


def cmd_ntk_spectrum(args: argparse.Namespace) -> dict:
    from workbench.compile import load_spec
    from workbench.theory.spectrum import ntk_spectrum

    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        raise WorkbenchError(
            f"--depths takes integers like 1,10,100, got {args.depths!r}"
        ) from None
    spec = load_spec(args.spec)
    result = ntk_spectrum(spec, args.m, args.c0, depths, sys.stderr.isatty(), args.digits).to_dict()
    if args.check_precision:
        from workbench.theory.check_precision import check_spectrum

        result["precision_check"] = _precision_check(
            args, lambda: check_spectrum(spec, args.m, args.c0, depths, result)
        )
    if not args.json:
        print(
            f"{result['architecture']} in the {result['phase']} phase ({result['precision']}): "
            f"q* = {result['q_star']}, chi_1 = {result['chi_1']:.6g}, xi_1 = {result['xi_1']}, "
            f"xi_* = {result['xi_star']}; lambda_rest from {result['lambda_rest_from']}"
        )
        rows = [
            {**{k: r[k] for k in ("depth", "lambda_max", "lambda_rest", "kappa", "eta_max")},
             **{f"{k} (asymptotic)": v for k, v in (r["asymptotic"] or {}).items()},
             "note": r.get("note")}
            for r in result["depths"]
        ]  # fmt: skip
        columns = list(dict.fromkeys(key for row in rows for key in row))
        _print_table(rows, columns)
        for note in result.get("notes", []):
            print(f"note: {note}")
        _print_precision_check(result)
    return result


def cmd_sweep(args: argparse.Namespace) -> dict:
    from workbench.sweep.outputs import write_outputs
    from workbench.sweep.run import plan_sweep, run_sweep
    from workbench.sweep.train import TrainSettings

    settings = TrainSettings(steps=args.steps, lr=args.lr, optimizer=args.optimizer,
                             momentum=args.momentum, batch_size=args.batch_size,
                             width=args.width, seed=args.seed, loss=args.loss)  # fmt: skip
    plan = plan_sweep(args.spec, args.grid, args.task, settings, args.train, args.scaling)
    outcome = run_sweep(plan, args.out, args.scheduler, args.workers, args.device,
                        progress=not args.json)  # fmt: skip
    written = write_outputs(outcome, args.metric)
    result = outcome.to_dict() | {"written": written}
    if not args.json:
        print(
            f"{len(plan.jobs)} cells: {outcome.computed} computed, {outcome.reused} reused "
            f"from {args.out}, {outcome.failed} failed ({outcome.seconds:.1f} s)"
        )
        for record in outcome.records:
            if "error" in record:
                print(f"  failed {record.get('cell')}: {' '.join(record['error'].split())}")
        for name, path in written.items():
            print(f"wrote {path} ({name})")
    args.exit_code = 1 if outcome.failed else 0
    return result


def cmd_tune(args: argparse.Namespace) -> dict:
    from workbench.tune import tune_spec, write_tuned

    tuned = tune_spec(args.spec, args.target, args.q_star, args.sigma_b2, args.block,
                      args.gamma)  # fmt: skip
    result = tuned.to_dict()
    if args.out:
        result["out"] = str(write_tuned(tuned, args.out))
    if not args.json:
        print(f"{tuned.block} of {tuned.spec}, target {tuned.target}:")
        if tuned.gamma is not None:
            print(f"  gamma = {tuned.gamma!r} (every batch norm of the block)")
        else:
            print(f"  sigma_w2 = {tuned.sigma_w2!r}, sigma_b2 = {tuned.sigma_b2!r}")
        print(f"  analysed again: {tuned.summary()}")
        for note in tuned.notes:
            print(f"  note: {note}")
        if args.out:
            print(f"wrote {result['out']}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description="Mean-field theory of deep networks at initialization."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--max-seconds", type=_budget, default=DEFAULT_SECONDS, help=BUDGET_HELP)
        p.set_defaults(func=func)
        return p

    p = add("kinds", cmd_kinds, "the spec language: every node kind, its keys and defaults")
    p.add_argument("kind", nargs="?", help="one kind (default: all)")
    p = add("check", cmd_check, "validate a spec and print a per-stage summary")
    p.add_argument("spec", type=Path)
    p = add("analyze", cmd_analyze, "fixed points, susceptibilities, depth scales per repeat block")
    p.add_argument("spec", type=Path)
    p.add_argument("--digits", type=_digits, help="compute with mpmath at N significant digits")
    p.add_argument("--check-precision", action="store_true", help=CHECK_PRECISION_HELP)
    p = add("critical", cmd_critical, "the critical sigma_w2 and q* at a bias variance")
    p.add_argument("--activation", required=True, help="a name (tanh) or an expression in x")
    p.add_argument("--sigma-b2", type=_number, required=True)
    p.add_argument("--digits", type=_digits)
    p = add(
        "phase-diagram", cmd_phase_diagram, "the critical line sigma_w2(sigma_b2), coloured by q*"
    )
    p.add_argument("--activation", required=True)
    p.add_argument("--sigma-b2", type=_grid, default=(0.0, 0.3, 31), help="a:b:n grid")
    p.add_argument("--digits", type=_digits)
    p.add_argument("--out", help="FILE.png, FILE.pdf, FILE.csv or FILE.json")
    p = add("kernel", cmd_kernel, "NNGP and NTK of the spec's output for given inputs")
    p.add_argument("spec", type=Path)
    p.add_argument("--inputs", type=Path, required=True, help="X.npy, shape (m, *input.shape)")
    p.add_argument("--x2", type=Path, help="a second set of inputs (cross kernels saved too)")
    p.add_argument("--get", default="nngp,ntk")
    p.add_argument("--parameterization", default="ntk", choices=["ntk", "standard"])
    p.add_argument("--digits", type=_digits)
    p.add_argument("--check-precision", action="store_true", help=CHECK_PRECISION_HELP)
    p.add_argument("--repeat", type=_count, default=1, help="time R evaluations (median)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="fuse a same-pixel (flatten-readout) program with torch.compile: the first call "
        "compiles (seconds, reported as compile_seconds), then it runs ~1.1x faster; other "
        "programs stay eager, which is faster for them (the notes say so)",
    )
    p.add_argument("--out", required=True, help="K.npz")
    p = add("gradients", cmd_gradients, "predicted weight-gradient norms per layer (backward)")
    p.add_argument("spec", type=Path)
    p.add_argument("--inputs", type=Path, help="X.npy, shape (m, *input.shape)")
    p.add_argument("--m", type=_count, default=1, help="random inputs when no --inputs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--bn-statistics", default="batch", choices=["batch", "fixed"],
                   help="batch norm: gradients through the batch statistics (torch's "
                   "training mode, default) or with the statistics held fixed")  # fmt: skip
    p.add_argument("--digits", type=_digits, help="compute with mpmath at N significant digits")
    p = add("moments", cmd_moments, "normalised sensitivity chi per layer (labatie2019)")
    p.add_argument("spec", type=Path)
    p.add_argument("--inputs", type=Path, help="X.npy: the data set, shape (m, *input.shape)")
    p.add_argument("--m", type=_count, default=32, help="random inputs when no --inputs")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and the networks")
    p.add_argument("--digits", type=_digits, help="compute with mpmath at N significant digits")
    p.add_argument("--simulate", action="store_true",
                   help="the Monte-Carlo side beside it: finite-width networks")  # fmt: skip
    p.add_argument("--width", type=_count, default=512, help="simulated width (with --simulate)")
    p.add_argument("--networks", type=_count, default=8, help="simulated networks")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", help="plot of chi and its increments: FILE.png or FILE.pdf")
    p = add("fisher", cmd_fisher, "Fisher information lambda_max bounds and eta_max")
    p.add_argument("spec", type=Path)
    p.add_argument("--inputs", type=Path, help="X.npy: a batch (default: the paper's data model)")
    p.add_argument("--batch-size", type=_count, help="a batch of M random inputs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batch")
    p.add_argument("--momentum", type=_number, default=0.0, help="mu in eta_max = 2(1+mu)/lambda")
    p.add_argument("--bn-statistics", default="fixed", choices=["fixed", "batch"],
                   help="batch norm statistics held fixed (the paper's model) or differentiated "
                   "over the batch (torch's training mode; needs a batch)")  # fmt: skip
    p.add_argument("--sweep", type=_gamma_sweep, help="gamma=a:b:n, every batch norm's gamma")
    p.add_argument("--out", help="plot of the sweep: FILE.png or FILE.pdf")
    p = add("derive", cmd_derive, "the symbolic recursions of every stage (sympy, LaTeX)")
    p.add_argument("spec", type=Path)
    p.add_argument("--latex", action="store_true", help="print the rules as LaTeX")
    p = add("report", cmd_report, "a derivation report: recursions, numbers and plots (HTML, MD)")
    p.add_argument("spec", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True, help="directory to write into")
    p.add_argument("--format", default="html,md", help="comma-separated: html, md, pdf")
    p.add_argument("--digits", type=int, help="significant digits for the fixed points")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs shown")
    p.add_argument("--validate", action="store_true",
                   help="add Monte-Carlo checks of the spec's own finite networks")  # fmt: skip
    p.add_argument("--sweep", type=Path, help="add a `workbench sweep` directory's heat map")
    p = add("modes", cmd_modes, "CNN depth scales per Fourier mode of each conv repeat block")
    p.add_argument("spec", type=Path)
    p = add("ntk-spectrum", cmd_ntk_spectrum, "NTK eigenvalues, condition number, max rate")
    p.add_argument("spec", type=Path)
    p.add_argument("--m", type=int, required=True, help="number of inputs")
    p.add_argument("--c0", type=_number, required=True, help="their pairwise correlation")
    p.add_argument("--depths", default="1,10,100")
    p.add_argument("--digits", type=_digits, help="compute with mpmath at N significant digits")
    p.add_argument("--check-precision", action="store_true", help=CHECK_PRECISION_HELP)
    p = add("sweep", cmd_sweep, "train (or analyse) the spec over a grid, on Dask; resumable")
    p.add_argument("spec", type=Path)
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=VALUES",
        help="a spec path (defaults.sigma_w2, layers[0].repeat.times; shorthands "
        "sigma_w2, sigma_b2, depth) or a training setting (lr, momentum, steps, "
        "width, batch_size, seed) = a:b:n, a:b:n:log or v1,v2,...; repeatable",
    )
    p.add_argument(
        "--task",
        default="train",
        choices=["train", "analyze", "fisher", "ntk-spectrum", "kernel"],
        help="train networks (default) or sweep a theory command's numbers",
    )
    p.add_argument("--train", default="digits", help="digits (scikit-learn's) or DATA.npz")
    p.add_argument(
        "--scaling",
        default="symmetric",
        choices=["symmetric", "positive"],
        help="pixels to [-0.5, 0.5] (default) or [0.25, 0.75] (pabari_zhou §4)",
    )
    p.add_argument("--steps", type=_count, default=300)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--batch-size", type=_count, default=128)
    p.add_argument(
        "--loss",
        default="cross_entropy",
        choices=["cross_entropy", "mse"],
        help="mse: ½‖f − onehot‖², whose Gauss–Newton is the Fisher of eta_max",
    )
    p.add_argument("--width", type=_count, help="every hidden width (default: the spec's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scheduler",
        default="local",
        help="local (a LocalCluster here), sequential (no Dask) or tcp://HOST:PORT",
    )
    p.add_argument("--workers", type=_count, default=2, help="local workers (one GPU each)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--metric",
        help="heat map metric (default test_accuracy; analyze: xi_c; "
        "fisher: eta_max; ntk-spectrum: kappa; kernel: nngp_correlation_mean)",
    )
    p.add_argument("--out", type=Path, required=True, help="directory; rerun to resume")
    p = add("tune", cmd_tune, "the sigma_w2 (and sigma_b2) of the critical line, into the spec")
    p.add_argument("spec", type=Path)
    p.add_argument("--target", default="critical",
                   help="critical (chi_1 = 1), chi_1=X or xi_c=N")  # fmt: skip
    p.add_argument("--gamma", action="store_true",
                   help="tune the block's batch-norm gamma (population statistics)")  # fmt: skip
    p.add_argument("--q-star", type=float, help="the fixed point q* to put on the critical line")
    p.add_argument("--sigma-b2", type=float, help="the bias variance (default: the spec's)")
    p.add_argument("--block", help="the repeat block's spec path, when the spec has several")
    p.add_argument("-o", "--out", help="write the tuned spec: TUNED.yaml")
    p = add("validate", cmd_validate, "run a validation suite: theory against Monte-Carlo")
    p.add_argument("suite", type=Path)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="the small version CI runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.theory.pace import time_budget

    args = build_parser().parse_args(argv)
    try:
        with time_budget(args.max_seconds):
            result = args.func(args)
        if args.json:
            print(json.dumps(result, indent=2))
    except WorkbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `workbench kinds | head`: the reader left; not an error
        _discard_stdout()
        return 0
    return getattr(args, "exit_code", 0)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has nowhere to fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush
        pass


if __name__ == "__main__":
    sys.exit(main())
