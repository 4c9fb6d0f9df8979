import math

import pytest

from workbench.errors import WorkbenchError
from workbench.sweep.data import load_data
from workbench.sweep.train import TrainSettings, train_cell

SPEC = {
    "name": "t",
    "input": {"shape": [64]},
    "defaults": {"sigma_w2": 1.5, "sigma_b2": 0.05},
    "layers": [{"dense": {"width": 16}}, {"act": "tanh"}, {"dense": {"width": 10}}],
}


def test_a_small_network_learns_digits_and_the_run_is_reproducible():
    data = load_data("digits")
    settings = TrainSettings(steps=150, lr=0.05, momentum=0.9)
    first = train_cell(SPEC, data, settings)
    assert first["final"]["test_accuracy"] > 0.8 and first["diverged_at_step"] is None
    assert first["curve"][0]["step"] == 0 and first["curve"][-1]["step"] == 150
    assert first["curve"][0]["train_loss"] > 2 * first["final"]["train_loss"]
    again = train_cell(SPEC, data, settings)
    assert again["curve"] == first["curve"]


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_a_learning_rate_far_too_large_is_reported_as_diverged(loss):
    found = train_cell(SPEC, load_data("digits"), TrainSettings(steps=50, lr=50.0, loss=loss,
                                                                momentum=0.9))  # fmt: skip
    if loss == "mse":  # the squared error explodes; cross-entropy's gradient stays bounded
        assert found["diverged_at_step"] is not None and found["diverged_at_step"] < 50
        assert found["curve"][-1]["step"] == found["diverged_at_step"]
    assert all(v is None or math.isfinite(v) for p in found["curve"] for v in p.values())


def test_settings_are_checked():
    for bad in ({"loss": "hinge"}, {"optimizer": "lbfgs"}, {"lr": 0.0}, {"momentum": 1.0},
                {"steps": 0}):  # fmt: skip
        with pytest.raises(WorkbenchError):
            TrainSettings(**bad)
