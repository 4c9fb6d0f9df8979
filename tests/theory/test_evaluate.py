"""The evaluator's fast path for settled variances (dual kernels interpolated in θ = arccos c)
against direct integration of every entry, deep in a critical tanh network where the
correlations still move; and that the fast path (then the fused settled loop) is taken."""

from __future__ import annotations

import dataclasses

import numpy as np

import workbench.theory.evaluate as evaluate
from workbench.compile import load_spec


def test_interpolated_layers_equal_direct_integration(monkeypatch, record_found):
    spec = load_spec("derivations/tanh-fc-critical.yaml")
    spec = dataclasses.replace(
        spec,
        layers=tuple(
            dataclasses.replace(n, times=300) if n.kind == "repeat" else n for n in spec.layers
        ),
    )
    x = np.random.default_rng(0).standard_normal((3, *spec.input_shape))
    import workbench.theory.settled_loop as settled_loop

    taken = record_found(evaluate.Evaluator, "interpolants_at")
    fused = record_found(settled_loop, "settled_passes")
    fast = evaluate.network_kernels(spec, x)
    # the variances settle within ~60 layers; the rest run as one fused loop
    assert sum(taken) >= 2 and fused[-1] and len(fused) < 100
    monkeypatch.setattr(evaluate.Evaluator, "interpolants_at", lambda *a: None)
    direct = evaluate.network_kernels(spec, x)
    for name in ("nngp", "ntk"):
        a, b = getattr(fast, name), getattr(direct, name)
        assert np.abs(a - b).max() <= 1e-11 * np.abs(b).max(), name


def test_long_repeats_show_progress(capsys):
    spec = load_spec("derivations/tanh-fc-critical.yaml")
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape))
    shown = evaluate.network_kernels(spec, x, progress=True)
    assert "layers[2]" in capsys.readouterr().err  # tqdm's bar, labelled by the block's path
    quiet = evaluate.network_kernels(spec, x)
    assert capsys.readouterr().err == ""
    assert np.array_equal(shown.nngp, quiet.nngp)
