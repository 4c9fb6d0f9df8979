import numpy as np
import pytest

from workbench.sweep.data import DataError, load_data


def test_digits_are_rescaled_as_the_paper_does():
    data = load_data("digits")
    assert data.classes == 10 and data.x_train.shape[1] == 64
    assert len(data.y_train) + len(data.y_test) == 1797
    assert data.x_train.min() == pytest.approx(-0.5) and data.x_train.max() == pytest.approx(0.5)
    positive = load_data("digits", "positive")
    assert positive.x_train.min() == pytest.approx(0.25)
    assert positive.x_train.max() == pytest.approx(0.75)
    assert data.shaped((1, 8, 8)).x_test.shape == (len(data.y_test), 1, 8, 8)
    with pytest.raises(DataError, match="64 features"):
        data.shaped((32,))


def test_an_npz_of_images_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.integers(0, 255, (50, 3, 3)), y=rng.integers(0, 4, 50))
    data = load_data(str(path))
    assert data.x_train.shape == (40, 9) and data.x_test.shape == (10, 9)


@pytest.mark.parametrize("arrays, message", [
    ({"a": np.zeros(3)}, "holds"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(5, int)}, "do not match"),
    ({"x": np.zeros((4, 2)) + 1j, "y": np.zeros(4, int)}, "real"),
    ({"x": np.full((4, 2), np.nan), "y": np.zeros(4, int)}, "NaN"),
    ({"x": np.arange(8.0).reshape(4, 2), "y": -np.ones(4, int)}, "negative"),
])  # fmt: skip
def test_bad_npz_files_are_typed_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_data(str(path))
    with pytest.raises(DataError, match="not an .npz"):
        load_data(str(tmp_path / "missing.npz"))
