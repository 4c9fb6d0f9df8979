import pytest

TANH_SPEC = """\
name: tanh-digits
input: {shape: [64]}
defaults: {sigma_w2: 1.5, sigma_b2: 0.05}
layers:
  - repeat:
      times: 4
      body: [{dense: {width: 16}}, {act: tanh}]
  - dense: {width: 10}
"""


@pytest.fixture
def tanh_spec(tmp_path):
    path = tmp_path / "tanh.yaml"
    path.write_text(TANH_SPEC)
    return path
