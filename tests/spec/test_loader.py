"""Good specs load to the right dataclasses, with paths and lines; builder == files."""

from __future__ import annotations

import pytest
from spec_factory import SPEC_FILES

from workbench.compile import build_spec, load_spec, spec_from_text
from workbench.errors import SpecError
from workbench.nodes import Act, BatchNorm, Conv, Dense, Flatten, Pool, Repeat, Residual
from workbench.spec import act, bn, conv, dense, flatten, pool, repeat, residual

SPECS = SPEC_FILES


def test_fc_tanh_yaml():
    spec = load_spec(SPECS / "fc_tanh.yaml")
    assert spec.name == "tanh-fc-critical"
    assert spec.input_shape == (784,)
    assert spec.file == str(SPECS / "fc_tanh.yaml")
    assert spec.defaults == {"sigma_w2": 1.76, "sigma_b2": 0.05}
    first, tanh, rep, last = spec.layers
    assert first == Dense(512, 1.76, 0.05, path="layers[0]", line=5)
    assert isinstance(tanh, Act) and (tanh.path, tanh.line) == ("layers[1]", 6)
    assert isinstance(rep, Repeat) and rep.times == 10000
    assert (rep.path, rep.line) == ("layers[2]", 7)
    assert rep.body[0] == Dense(512, 1.76, 0.05, path="layers[2].repeat.body[0]", line=10)
    assert (rep.body[1].path, rep.body[1].line) == ("layers[2].repeat.body[1]", 11)
    assert last == Dense(10, 1.76, 0.05, path="layers[3]", line=12)


def test_conv1d_yaml():
    spec = load_spec(SPECS / "conv1d.yaml")
    assert spec.input_shape == (3, 32)
    c0, _, rep, p, d = spec.layers
    assert c0 == Conv(16, (3,), 2.0, 0.0, path="layers[0]", line=9)
    inner = rep.body[0]
    assert inner.kernel == (5,) and inner.variance == (0.1, 0.2, 0.4, 0.2, 0.1)
    assert inner.init == "gaussian" and inner.line == 14
    assert isinstance(p, Pool) and p.mode == "global_avg" and p.line == 20
    assert d == Dense(10, 1.0, 0.0, path="layers[4]", line=21)


def test_conv2d_resnet_yaml():
    spec = load_spec(SPECS / "conv2d_resnet.yaml")
    c0, b0, _, rep, p, f, d = spec.layers
    assert c0.kernel == (3, 3) and c0.sigma_b2 == 0.01
    assert b0 == BatchNorm(path="layers[1]", line=6)
    res = rep.body[0]
    assert isinstance(res, Residual) and res.scale == 0.5
    assert (res.path, res.line) == ("layers[3].repeat.body[0]", 11)
    rconv, rbn, ract = res.body
    assert rconv == Conv(
        32, (3, 3), 1.5, 0.01, path="layers[3].repeat.body[0].residual.body[0]", line=14
    )
    assert rbn == BatchNorm(2.0, 0.1, path="layers[3].repeat.body[0].residual.body[1]", line=15)
    assert isinstance(ract, Act) and ract.line == 16
    assert isinstance(p, Pool) and isinstance(f, Flatten) and f.line == 18
    assert d.init == "orthogonal" and d.line == 19


def test_json_spec_with_lines():
    spec = load_spec(SPECS / "fc_erf.json")
    d0, a0, rep, f, d1 = spec.layers
    assert d0 == Dense(256, 1.5, 0.1, path="layers[0]", line=6)
    assert a0.line == 7 and rep.line == 8 and f.line == 15 and d1.line == 16
    assert rep.body[0] == Dense(256, 1.5, 0.0, path="layers[2].repeat.body[0]", line=11)
    assert isinstance(f, Flatten)


def test_json_error_points_at_key_line():
    text = (SPECS / "fc_erf.json").read_text().replace('"width": 1}', '"widht": 1}')
    with pytest.raises(SpecError) as info:
        spec_from_text(text, file="net.json", fmt="json")
    assert (info.value.path, info.value.line, info.value.file) == (
        "layers[4].dense.widht",
        16,
        "net.json",
    )
    assert "width" in info.value.hint


def test_builder_matches_yaml():
    built = build_spec(
        "conv2d-resnet",
        (3, 16, 16),
        [
            conv(32, (3, 3)),
            "bn",
            act("relu"),
            repeat(
                8,
                [
                    residual(
                        [
                            conv(32, 3, sigma_w2=1.5),
                            bn(gamma=2.0, beta=0.1),
                            act({"expr": "max(x, 0)"}),
                        ],
                        scale=0.5,
                    )
                ],
            ),
            pool(),
            flatten(),
            dense(10, init="orthogonal"),
        ],
        defaults={"sigma_w2": 2.0, "sigma_b2": 0.01},
    )
    loaded = load_spec(SPECS / "conv2d_resnet.yaml")
    assert built.file is None and built.layers[0].line is None
    strip = [(n.kind, n.path) for n in built.layers]
    assert strip == [(n.kind, n.path) for n in loaded.layers]
    assert built.layers[0] == Conv(32, (3, 3), 2.0, 0.01, path="layers[0]")
    assert built.layers[1] == BatchNorm(path="layers[1]")
    assert built.layers[3].body[0].body[0] == Conv(
        32, (3, 3), 1.5, 0.01, path="layers[3].repeat.body[0].residual.body[0]"
    )


def test_builder_uses_same_validation():
    with pytest.raises(SpecError) as info:
        build_spec("x", [10], [dense(5, sigma_w2=0.0, sigma_b2=0.1)])
    assert info.value.path == "layers[0].dense.sigma_w2"
    assert info.value.line is None and info.value.file is None


def test_bare_and_empty_forms():
    text = (
        "name: n\ninput: {shape: [4, 8]}\nlayers:\n  - bn\n  - flatten: {}\n"
        "  - dense: {width: 2, sigma_w2: 1, sigma_b2: 0}\n"
    )
    spec = spec_from_text(text)
    assert [n.kind for n in spec.layers] == ["bn", "flatten", "dense"]
    assert spec.layers[2].sigma_w2 == 1.0 and isinstance(spec.layers[2].sigma_w2, float)
    assert spec.defaults == {}


def test_yml_extension(tmp_path):
    path = tmp_path / "net.yml"
    path.write_text((SPECS / "fc_tanh.yaml").read_text())
    assert load_spec(path).name == "tanh-fc-critical"
