"""Training data for sweeps: scikit-learn's shipped digits, or a local ``.npz``; nothing is
downloaded. Pixels are rescaled as pabari_zhou §4 does for MNIST: to [−0.5, 0.5] for
activations with values in [−1, 1] (and ReLU), to [0.25, 0.75] for those in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError

RANGES = {"symmetric": (-0.5, 0.5), "positive": (0.25, 0.75)}
TEST_FRACTION = 0.2
_SPLIT_SEED = 20240  # the digits' train/test split, fixed so every cell sees the same data


class DataError(WorkbenchError):
    """Training data that cannot be read or does not fit the spec."""


@dataclass(frozen=True)
class Dataset:
    """Images flattened to rows (float32), integer labels 0..classes−1, and what they are."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    description: str

    def shaped(self, input_shape: tuple[int, ...]) -> Dataset:
        """The same data with rows reshaped to a spec's input shape."""
        size = int(np.prod(input_shape))
        if self.x_train.shape[1] != size:
            raise DataError(
                f"the data has {self.x_train.shape[1]} features per example, the spec's input "
                f"shape {list(input_shape)} takes {size}",
                hint="set the spec's input shape to the data's (digits: [64] or [1, 8, 8])",
            )
        shape = (-1, *input_shape)
        return Dataset(self.x_train.reshape(shape), self.y_train, self.x_test.reshape(shape),
                       self.y_test, self.classes, self.description)  # fmt: skip


def load_data(source: str, scaling: str = "symmetric") -> Dataset:
    """``digits`` or the path of an ``.npz`` holding x_train, y_train, x_test, y_test (or x, y,
    split 80/20 here); pixels rescaled linearly from the training set's range to RANGES[scaling]."""
    if scaling not in RANGES:
        raise DataError(f"unknown scaling {scaling!r}", hint=f"use one of {', '.join(RANGES)}")
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.data, digits.target
        x_train, y_train, x_test, y_test = _split(x, y)
        name = "scikit-learn digits (8×8, 10 classes)"
    else:
        x_train, y_train, x_test, y_test = _read_npz(Path(source))
        name = f"{source}"
    lo, hi = float(x_train.min()), float(x_train.max())
    if not hi > lo:
        raise DataError(f"{name}: every training pixel has the same value", hint="check the data")
    a, b = RANGES[scaling]

    def scale(x: np.ndarray) -> np.ndarray:
        return (a + (b - a) * (x - lo) / (hi - lo)).astype(np.float32)

    classes = int(max(y_train.max(), y_test.max())) + 1
    description = (f"{name}: {len(y_train)} training and {len(y_test)} test examples, pixels "
                   f"rescaled from [{lo:g}, {hi:g}] to [{a}, {b}]")  # fmt: skip
    return Dataset(scale(x_train), y_train, scale(x_test), y_test, classes, description)


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    n_test = int(round(TEST_FRACTION * len(y)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


_NPZ_HINT = "an .npz with arrays x_train, y_train, x_test, y_test (or x, y), labels 0..K-1"


def _check_pair(path: Path, x: np.ndarray, y: np.ndarray, what: str) -> None:
    """Images (n, ...) of real numbers, finite, with n integer labels ≥ 0."""
    name = f"{what} images" if what else "images"
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise DataError(f"{path}: the {name} {x.shape} and labels {y.shape} do not match",
                        hint=_NPZ_HINT)  # fmt: skip
    if x.dtype.kind not in "uif" or y.dtype.kind not in "ui":
        raise DataError(f"{path}: {name} must be real and labels integers", hint=_NPZ_HINT)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: {name} hold NaN or inf", hint=_NPZ_HINT)
    if y.min() < 0:
        raise DataError(f"{path}: negative labels", hint=_NPZ_HINT)


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise DataError(f"{path}: not an .npz file", hint=_NPZ_HINT)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read: {exc}", hint=_NPZ_HINT) from None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        parts = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        _check_pair(path, parts[0], parts[1], "training")
        _check_pair(path, parts[2], parts[3], "test")
    elif {"x", "y"} <= arrays.keys():
        _check_pair(path, arrays["x"], arrays["y"], "")
        parts = list(_split(arrays["x"], arrays["y"]))
    else:
        raise DataError(f"{path}: holds {sorted(arrays)}", hint=_NPZ_HINT)
    x_train, y_train, x_test, y_test = parts
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: training images {x_train.shape[1:]} and test images "
                        f"{x_test.shape[1:]} differ", hint=_NPZ_HINT)  # fmt: skip
    flat = [x.reshape(len(x), -1).astype(np.float64) for x in (x_train, x_test)]
    return flat[0], y_train.astype(np.int64), flat[1], y_test.astype(np.int64)
