"""Reference timings from neural-tangents (run in an environment that has it, e.g.
``python benchmarks/nt_reference.py IN.npz OUT.npz``): the same FC and 1D CNN networks as
``benchmarks.bench kernels``, jitted analytic kernels in float64, compile excluded. Kept free of
workbench imports so that it runs in neural-tangents' own virtual environment."""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax

    data = np.load(argv[0])
    sw, sb = float(data["sigma_w2"]) ** 0.5, float(data["sigma_b2"]) ** 0.5
    import jax.numpy as jnp

    acts = {"erf": stax.Erf, "relu": stax.Relu,
            "tanh": lambda: stax.ElementwiseNumerical(jnp.tanh, deg=25)}  # fmt: skip
    results, kernels = {}, {}
    for name in ("fc_erf", "fc_relu", "fc_tanh"):
        act = acts[name.split("_")[1]]
        layers = [stax.Dense(512, W_std=sw, b_std=sb)]
        for _ in range(int(data["fc_depth"]) - 1):
            layers += [act(), stax.Dense(512, W_std=sw, b_std=sb)]
        results[name], kernels[name] = _time(stax.serial(*layers)[2], data["fc_x"])
    # 100 x (Dense(512) + Erf) on 10-dimensional inputs: the shape-changing repeat of
    # workbench's spec language (its first pass maps 10 -> 512)
    serial = stax.serial(*[stax.Dense(512, W_std=sw, b_std=sb), stax.Erf()] * 100)
    results["fc_erf_shape"], kernels["fc_erf_shape"] = _time(serial[2], data["shape_x"])
    for name, readout in (("cnn_p", stax.GlobalAvgPool()), ("cnn_f", stax.Flatten())):
        conv = dict(padding="CIRCULAR", W_std=sw, b_std=sb)
        layers = [stax.Conv(64, (3,), **conv)]
        for _ in range(int(data["cnn_depth"]) - 1):
            layers += [stax.Relu(), stax.Conv(64, (3,), **conv)]
        layers += [stax.Relu(), readout, stax.Dense(1, W_std=sw, b_std=sb)]
        x = np.transpose(data["cnn_x"], (0, 2, 1))  # channels last
        results[name], kernels[name] = _time(stax.serial(*layers)[2], x)
    np.savez(argv[1], **{f"{k}_{t}": v[t] for k, v in kernels.items() for t in ("nngp", "ntk")})
    print(json.dumps(results))
    return 0


def _time(kernel_fn, x, repeats: int = 3):
    """Seconds per call after compiling: the median over ``repeats`` rounds of back-to-back
    calls (as many as fill 0.1 s, at least one), as ``benchmarks.bench`` times its own."""
    import jax
    import numpy as np

    fn = jax.jit(kernel_fn, static_argnames="get")
    out = fn(x, None, get=("nngp", "ntk"))
    jax.block_until_ready(out)
    start = time.perf_counter()
    jax.block_until_ready(fn(x, None, get=("nngp", "ntk")))
    once = time.perf_counter() - start
    calls = max(1, int(0.1 / max(once, 1e-9)))
    repeats = 1 if once > 10 else repeats  # a minute-long call: one more round suffices
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            jax.block_until_ready(fn(x, None, get=("nngp", "ntk")))
        rounds.append((time.perf_counter() - start) / calls)
    return sorted(rounds)[len(rounds) // 2], {
        "nngp": np.asarray(out.nngp),
        "ntk": np.asarray(out.ntk),
    }


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
