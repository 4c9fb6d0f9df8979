"""Independent random streams for the simulator's distinct purposes: weights, inputs, input
noise, readout directions, power-iteration starts. Each is seeded from (seed, purpose) through
numpy's SeedSequence, so the same user seed never makes two purposes draw the same numbers
(a noise vector equal to the first layer's weights made labatie2019's χ¹ 10% too high)."""

from __future__ import annotations

import zlib

import numpy as np
import torch

PURPOSES = ("weights", "inputs", "noise", "readout", "power_iteration")


def stream(seed: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator for ``purpose`` (one of PURPOSES) seeded from ``seed``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown random stream {purpose!r}; one of {PURPOSES}")
    key = zlib.crc32(purpose.encode())
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(key,)).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(state))
