"""Hypothesis runs the same examples on every run (CI must not fail on a newly drawn example
unrelated to the change); ``HYPOTHESIS_PROFILE=explore`` draws fresh ones, and more of them."""

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))


import pytest  # noqa: E402
from spec_factory import make_spec as _make_spec  # noqa: E402


@pytest.fixture
def make_spec():
    """The shared spec builder (``spec_factory.make_spec``)."""
    return _make_spec
