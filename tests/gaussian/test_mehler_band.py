"""Mehler rows interpolated in the variance (gaussian/mehler_band.py): a band equals the
direct rows to its stated bound, and a slowly settling block gives the same kernels with
bands as without, from far fewer direct row computations."""

from __future__ import annotations

import numpy as np
import pytest

import workbench.gaussian.mehler as mehler
from workbench.activations import parse_activation
from workbench.gaussian.mehler_band import TOLERANCE, Walks, _build
from workbench.theory.evaluate import network_kernels


@pytest.mark.parametrize(("name", "lo", "hi"), [("tanh", 0.95, 1.05), ("swish", 4.0, 5.5),
                                                ("erf", 0.2, 0.3)])  # fmt: skip
def test_band_rows_equal_direct_rows(name, lo, hi):
    f = parse_activation(name)
    band = _build(lo, hi, lambda q, terms: mehler._rows(f, q, terms))
    assert band is not None
    q = np.random.default_rng(0).uniform(lo, hi, 7)
    direct, norm2 = mehler._rows(f, q, band.series.shape[1])
    weight = np.abs(direct).max(axis=0)
    error = np.abs(direct[:, : band.series.shape[1]] - band.rows(q)) @ weight
    assert (error <= TOLERANCE * norm2).all()


def test_no_band_for_a_kinked_activation():
    f = parse_activation("relu")
    assert _build(0.9, 1.1, lambda q, terms: mehler._rows(f, q, terms)) is None


def _swish_block(make_spec, depth: int = 800):
    spec = make_spec([{"dense": {"width": 4}}, {"repeat": {"times": depth, "body": [
        {"act": "swish"}, {"dense": {"width": 4}}]}}], shape=(4,), sw2=2.0, sb2=0.5)  # fmt: skip
    x = np.array([[1.0, 0.5, -0.5, 0.2], [0.3, -1.0, 0.8, 0.1], [0.2, 0.2, 0.9, -0.4]]) * 1e-8
    return spec, x


def test_slowly_settling_block_equals_the_direct_rows(make_spec, monkeypatch):
    """swish at σ_w² = 2, σ_b² = 0.5 (χ_q ≈ 0.99): the variances walk ~3300 passes before
    they settle; the fuzz harness's block (10⁵ passes) took 13 s on direct rows."""
    spec, x = _swish_block(make_spec)
    calls = []
    rows = mehler._rows

    def counted(f, q, terms=0):
        calls.append(len(q))
        return rows(f, q, terms)

    monkeypatch.setattr(mehler, "_rows", counted)
    mehler._direct_rows.cache_clear()
    banded = network_kernels(spec, x, ntk=True)
    with_bands = len(calls)
    calls.clear()
    monkeypatch.setattr(Walks, "record", lambda *args: None)
    mehler._direct_rows.cache_clear()
    direct = network_kernels(spec, x, ntk=True)
    assert with_bands < len(calls) / 4
    assert np.allclose(banded.nngp, direct.nngp, rtol=1e-13, atol=0)
    assert np.allclose(banded.ntk, direct.ntk, rtol=1e-13, atol=0)
    assert np.array_equal(np.diag(banded.nngp), np.diag(direct.nngp))  # E[f²] is never banded


def test_bands_live_only_inside_the_block_that_built_them(make_spec):
    """Rows asked for after a banded block are direct, so no result depends on what ran
    before it (a band's rows differ by rounding; a near-critical ξ_c amplified that to 1e-4
    in a report's table against a later analyze)."""
    f = parse_activation("swish")
    q = np.array([5.19675])  # inside the bands the block builds near its fixed point
    before = mehler.coefficients(f, q)[0].copy()
    network_kernels(*_swish_block(make_spec, 3000), ntk=True)
    assert mehler._WALKS.get() is None
    mehler._direct_rows.cache_clear()
    assert np.array_equal(mehler.coefficients(f, q)[0], before)
