"""The vectorised grid analysis against ``analyze_cycle`` cell by cell."""

import numpy as np
import pytest

from workbench.activations import parse_activation
from workbench.theory.fc_fixed_points import analyze_cycle
from workbench.theory.fc_grid import analyze_grid
from workbench.theory.fc_maps import single_step

NAMES = ("q_star", "c_star", "chi_1", "chi_q", "chi_c")


@pytest.mark.parametrize("name, w_range, b_range, n", [
    ("erf", (0.5, 4.0), (0.0, 0.3), 12),
    ("tanh", (1.2, 3.0), (0.05, 0.2), 5),
])  # fmt: skip
def test_every_served_cell_agrees_with_analyze(name, w_range, b_range, n):
    phi = parse_activation(name)
    sw, sb = (v.ravel() for v in np.meshgrid(np.linspace(*w_range, n), np.linspace(*b_range, n)))
    grid = analyze_grid(phi, sw, sb)
    for i in range(sw.size):
        one = analyze_cycle(single_step(phi, float(sw[i]), float(sb[i])))
        if not grid.served[i]:
            # left to the caller: q* → 0 (no bias, ordered) or on the critical line
            assert one.phase == "critical" or (sb[i] == 0 and sw[i] <= 1), (sw[i], sb[i])
            continue
        for key in NAMES:
            theirs = float(getattr(one, key))
            assert getattr(grid, key)[i] == pytest.approx(theirs, rel=1e-9, abs=1e-9), key
    assert grid.served.sum() >= sw.size - n  # at most the no-bias row is left out


def test_cells_near_the_critical_line_are_left_to_analyze():
    from workbench.theory.critical import critical_point

    phi = parse_activation("tanh")
    sw2 = float(critical_point(phi, 0.1).sigma_w2)
    grid = analyze_grid(phi, np.array([sw2, sw2 * (1 + 1e-8), 2.0]), np.array([0.1, 0.1, 0.1]))
    assert grid.served.tolist() == [False, False, True]
    assert np.isnan(grid.chi_1[0])
