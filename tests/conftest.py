"""Hypothesis runs the same examples on every run (CI must not fail on a newly drawn example
unrelated to the change); ``HYPOTHESIS_PROFILE=explore`` draws fresh ones, and more of them."""

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

if "PYTEST_XDIST_WORKER" in os.environ:  # `pytest -n 2`: one core per worker, not two each
    import torch

    torch.set_num_threads(1)


import pytest  # noqa: E402
from spec_factory import make_spec as _make_spec  # noqa: E402


@pytest.fixture
def make_spec():
    """The shared spec builder (``spec_factory.make_spec``)."""
    return _make_spec


@pytest.fixture
def record_found(monkeypatch):
    """``record_found(owner, name)`` wraps ``owner.name`` (a function or method) and returns
    the list it fills: per call, whether it found something (returned other than None)."""

    def wrap(owner, name):
        calls = []
        original = getattr(owner, name)

        def recording(*args):
            found = original(*args)
            calls.append(found is not None)
            return found

        monkeypatch.setattr(owner, name, recording)
        return calls

    return wrap
