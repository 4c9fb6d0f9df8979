"""Each class of spec error: a SpecError with the right path, line and a useful message/hint."""

from __future__ import annotations

import pytest
from spec_factory import SPEC_FILES

from workbench.compile import build_spec, load_spec, spec_from_dict, spec_from_text
from workbench.errors import SpecError, WorkbenchError
from workbench.spec import dense, repeat

SPECS = SPEC_FILES


FC = """\
name: net
input: {shape: [784]}
defaults: {sigma_w2: 1.76, sigma_b2: 0.05}
layers:
  - dense: {width: 512}
  - act: tanh
  - repeat:
      times: 3
      body:
        - dense: {width: 512}
        - act: tanh
  - dense: {width: 10}
"""

CONV = """\
name: cnn
input: {shape: [3, 8, 8]}
defaults: {sigma_w2: 2.0, sigma_b2: 0.0}
layers:
  - conv: {channels: 4, kernel: 3}
  - act: relu
  - residual:
      body:
        - conv: {channels: 4, kernel: [3, 3]}
        - act: relu
  - pool: global_avg
  - dense: {width: 10}
"""


def fc(old: str, new: str, count: int = 1) -> str:
    assert old in FC
    return FC.replace(old, new, count)


def cnn(old: str, new: str) -> str:
    assert old in CONV
    return CONV.replace(old, new, 1)


CASES = [
    # (id, text, path, line, fragment of message or hint)
    ("misspelt-key", fc("width: 10", "widht: 10"), "layers[3].dense.widht", 12, "'width'"),
    (
        "unknown-kind",
        fc("- dense: {width: 512}", "- dnese: {width: 512}"),
        "layers[0]",
        5,
        "'dense'",
    ),
    ("unknown-top-key", fc("layers:", "layerz:"), "layerz", 4, "'layers'"),
    (
        "unknown-init",
        fc("width: 10", "width: 10, init: orthogonl"),
        "layers[3].dense.init",
        12,
        "'orthogonal'",
    ),
    ("width-string", fc("width: 10", 'width: "10"'), "layers[3].dense.width", 12, "integer"),
    ("width-bool", fc("width: 10", "width: true"), "layers[3].dense.width", 12, "boolean"),
    ("width-float", fc("width: 10", "width: 10.0"), "layers[3].dense.width", 12, "integer"),
    ("width-negative", fc("width: 10", "width: -3"), "layers[3].dense.width", 12, ">= 1"),
    ("sigma-w2-zero", fc("sigma_w2: 1.76", "sigma_w2: 0"), "defaults.sigma_w2", 3, "> 0"),
    (
        "sigma-w2-negative",
        fc("width: 10", "width: 10, sigma_w2: -1"),
        "layers[3].dense.sigma_w2",
        12,
        "> 0",
    ),
    (
        "sigma-b2-negative",
        fc("width: 10", "width: 10, sigma_b2: -0.1"),
        "layers[3].dense.sigma_b2",
        12,
        ">= 0",
    ),
    (
        "sigma-nan",
        fc("width: 10", "width: 10, sigma_w2: .nan"),
        "layers[3].dense.sigma_w2",
        12,
        "finite",
    ),
    (
        "sigma-text",
        fc("width: 10", "width: 10, sigma_w2: '1e-3'"),
        "layers[3].dense.sigma_w2",
        12,
        "remove the quotes",
    ),
    (
        "sigma-missing",
        fc("defaults: {sigma_w2: 1.76, sigma_b2: 0.05}\n", ""),
        "layers[0].dense",
        4,
        "defaults",
    ),
    ("unknown-default", fc("sigma_b2: 0.05", "sigma_b: 0.05"), "defaults.sigma_b", 3, "'sigma_b2'"),
    ("dense-on-spatial", fc("[784]", "[3, 28, 28]"), "layers[0]", 5, "flatten"),
    ("conv-on-flat", cnn("[3, 8, 8]", "[3]"), "layers[0]", 5, "spatial"),
    (
        "conv-after-flatten",
        cnn("  - act: relu\n  - residual", "  - flatten\n  - residual"),
        "layers[2].residual.body[0]",
        9,
        "flat",
    ),
    ("kernel-too-large", cnn("[3, 8, 8]", "[3, 2, 8]"), "layers[0].conv.kernel", 5, "larger"),
    (
        "kernel-dims",
        cnn("kernel: [3, 3]", "kernel: [3]"),
        "layers[2].residual.body[0].conv.kernel",
        9,
        "2 spatial dims",
    ),
    ("kernel-even", cnn("kernel: 3", "kernel: 4"), "layers[0].conv.kernel", 5, "odd"),
    (
        "variance-length",
        cnn("kernel: 3}", "kernel: 3, variance: [0.5, 0.5]}"),
        "layers[0].conv.variance",
        5,
        "9 taps",
    ),
    (
        "variance-sum",
        cnn(
            "kernel: [3, 3]}",
            "kernel: [3, 3], variance: [0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]}",
        ),
        "layers[2].residual.body[0].conv.variance",
        9,
        "sum to 1",
    ),
    (
        "variance-negative",
        cnn("kernel: 3}", "kernel: [1, 1], variance: [-1]}"),
        "layers[0].conv.variance[0]",
        5,
        ">= 0",
    ),
    (
        "repeat-second-pass",
        "name: cnn\ninput: {shape: [3, 8, 8]}\ndefaults: {sigma_w2: 2.0, sigma_b2: 0.0}\n"
        "layers:\n  - repeat:\n      times: 2\n      body:\n"
        "        - conv: {channels: 4, kernel: 3}\n        - pool: global_avg\n",
        "layers[0].repeat.body[0]",
        8,
        "second pass",
    ),
    (
        "residual-changes-shape",
        cnn("channels: 4, kernel: [3, 3]", "channels: 5, kernel: [3, 3]"),
        "layers[2].residual.body",
        8,
        "changes the shape",
    ),
    (
        "residual-pools",
        cnn("        - act: relu", "        - pool: global_avg"),
        "layers[2].residual.body",
        8,
        "changes the shape",
    ),
    (
        "empty-body",
        fc("      body:\n        - dense: {width: 512}\n        - act: tanh\n", "      body: []\n"),
        "layers[2].repeat.body",
        9,
        "empty",
    ),
    (
        "missing-body",
        fc("      body:\n        - dense: {width: 512}\n        - act: tanh\n", ""),
        "layers[2].repeat",
        7,
        "body",
    ),
    ("times-zero", fc("times: 3", "times: 0"), "layers[2].repeat.times", 8, "positive integer"),
    ("times-float", fc("times: 3", "times: 3.0"), "layers[2].repeat.times", 8, "decimal point"),
    ("times-bool", fc("times: 3", "times: yes"), "layers[2].repeat.times", 8, "boolean"),
    ("times-string", fc("times: 3", 'times: "3"'), "layers[2].repeat.times", 8, "string"),
    ("missing-name", fc("name: net\n", ""), "", 1, "name"),
    ("missing-input", fc("input: {shape: [784]}\n", ""), "", 1, "input"),
    ("missing-layers", FC[: FC.index("layers:")], "", 1, "layers"),
    ("empty-layers", FC[: FC.index("layers:")] + "layers: []\n", "layers", 4, "empty"),
    ("layers-not-list", FC[: FC.index("layers:")] + "layers: {dense: 3}\n", "layers", 4, "list"),
    ("name-not-string", fc("name: net", "name: [net]"), "name", 1, "string"),
    ("input-rank", fc("[784]", "[1, 2, 3, 4]"), "input.shape", 2, "1 to 3"),
    ("input-zero", fc("[784]", "[0]"), "input.shape[0]", 2, "positive"),
    ("input-key", fc("{shape: [784]}", "{shap: [784]}"), "input.shap", 2, "'shape'"),
    ("top-not-mapping", "- dense: {width: 3}\n", "", 1, "mapping"),
    ("empty-file", "", "", None, "mapping"),
    (
        "two-keys-in-layer",
        fc("  - act: tanh\n  - repeat", "  - act: tanh\n    bn: {}\n  - repeat"),
        "layers[1]",
        6,
        "exactly one key",
    ),
    (
        "bare-needs-settings",
        fc("  - act: tanh\n  - repeat", "  - dense\n  - repeat"),
        "layers[1]",
        6,
        "dense: {width",
    ),
    (
        "layer-not-mapping",
        fc("  - act: tanh\n  - repeat", "  - 42\n  - repeat"),
        "layers[1]",
        6,
        "one-key mapping",
    ),
    (
        "unknown-activation",
        fc("  - act: tanh\n  - repeat", "  - act: tanhh\n  - repeat"),
        "layers[1].act",
        6,
        "tanhh",
    ),
    (
        "bad-expression",
        fc("  - act: tanh\n  - repeat", '  - act: {expr: "x + ("}\n  - repeat'),
        "layers[1].act.expr",
        6,
        "",
    ),
    (
        "activation-type",
        fc("  - act: tanh\n  - repeat", "  - act: 3\n  - repeat"),
        "layers[1].act",
        6,
        "expr",
    ),
    ("pool-mode", cnn("global_avg", "global_max"), "layers[3].pool", 11, "'global_avg'"),
    (
        "bn-key",
        cnn("  - act: relu\n  - residual", "  - bn: {gama: 1}\n  - residual"),
        "layers[1].bn.gama",
        6,
        "'gamma'",
    ),
    (
        "duplicate-key",
        fc("width: 10", "width: 10, width: 11"),
        "layers[3].dense.width",
        12,
        "duplicate",
    ),
    ("malformed-yaml", fc("  - act: tanh\n", "  - act: [tanh\n"), "", 7, "malformed YAML"),
    ("bad-indent", fc("      times: 3", "     times: 3"), "", 9, "malformed YAML"),
    ("python-tag", fc("name: net", "name: !!python/object/apply:os.system [ls]"), "", 1, "tag"),
    ("custom-tag", fc("width: 10", "width: !int 10"), "", 12, "tag"),
    ("recursive-alias", fc("  - act: tanh\n", "  - &a [*a]\n"), "layers[1][0]", 6, "recursive"),
]


@pytest.mark.parametrize(
    ("text", "path", "line", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_yaml_error(text, path, line, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_text(text, file="net.yaml")
    err = info.value
    assert (err.path, err.line, err.file) == (path, line, "net.yaml"), str(err)
    assert fragment in str(err)
    assert err.hint or "malformed" in err.message


def test_error_string_names_file_line_path():
    with pytest.raises(SpecError) as info:
        spec_from_text(fc("width: 10", "widht: 10"), file="net.yaml")
    assert str(info.value).startswith("net.yaml:12: layers[3].dense.widht: unknown key 'widht'")
    assert "hint: did you mean 'width'?" in str(info.value)


def test_sigma_b2_zero_is_allowed():
    spec = spec_from_text(fc("sigma_b2: 0.05", "sigma_b2: 0"))
    assert spec.layers[0].sigma_b2 == 0.0


def test_malformed_json_line():
    with pytest.raises(SpecError) as info:
        spec_from_text('{\n  "name": "x",\n  "input": {"shape": [3]\n}', fmt="json")
    assert info.value.line == 4 and "malformed JSON" in info.value.message


def test_json_duplicate_key():
    with pytest.raises(SpecError) as info:
        spec_from_text('{"name": "x",\n "name": "y"}', fmt="json")
    assert (info.value.path, info.value.line) == ("name", 2)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert "not found" in info.value.message and info.value.file.endswith("nope.yaml")


def test_unreadable_file(tmp_path):
    path = tmp_path / "dir.yaml"
    path.mkdir()
    with pytest.raises(SpecError, match="not a regular file"):
        load_spec(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(FC)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert ".yaml" in info.value.hint


def test_unknown_format():
    with pytest.raises(SpecError, match="format"):
        spec_from_text(FC, fmt="toml")


def test_builder_errors_have_paths_without_lines():
    with pytest.raises(SpecError) as info:
        build_spec("x", [8], [repeat(True, [dense(8)])], defaults={"sigma_w2": 1, "sigma_b2": 0})
    assert (info.value.path, info.value.line) == ("layers[0].repeat.times", None)
    with pytest.raises(SpecError) as info:
        build_spec("x", [8], [dense(8)])
    assert info.value.path == "layers[0].dense" and "sigma_w2" in info.value.message


def test_non_string_keys():
    with pytest.raises(SpecError, match="keys must be strings"):
        spec_from_dict({"name": "x", "input": {"shape": [3]}, "layers": [{1: 2}], 3: 4})


@pytest.mark.parametrize(
    "value, read",
    [
        ("1:30", "90"),
        ("010", "8"),
        ("0x10", "16"),
        ("0b101", "5"),
        ("1_000", "1000"),
        ("1:30.5", "90.5"),
    ],  # fmt: skip
)
def test_yaml_1_1_numbers_are_refused(tmp_path, value, read):
    """YAML 1.1's other spellings of numbers are refused with the value they would have been
    given, at their line; plain decimals (and YAML 1.2's 1e-3) are numbers."""
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ninput: {{shape: [4]}}\nlayers:\n  - dense: {{width: {value}}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.line == 4 and f"read it as {read}" in err.value.message


@pytest.mark.parametrize("value", ["!!int _", "!!float _", "!!int 0x", "!!float ."])
def test_tagged_non_numbers_are_refused_at_their_line(tmp_path, value):
    """Found by the fuzz harness: `name: !!int _` made PyYAML itself raise an IndexError."""
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ninput: {{shape: [4]}}\nlayers:\n  - dense: {{width: {value}}}\n")
    with pytest.raises(SpecError, match="is not a number") as err:
        load_spec(path)
    assert err.value.line == 4


@pytest.mark.parametrize("value, becomes", [("1e-400", "0.0"), ("1.0e400", "inf")])
def test_reals_outside_float64_are_refused(tmp_path, value, becomes):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: t\ninput: {{shape: [4]}}\ndefaults: {{sigma_w2: {value}}}\n"
                    "layers:\n  - dense: {width: 3}\n")  # fmt: skip
    with pytest.raises(SpecError, match=f"would become {becomes}") as err:
        load_spec(path)
    assert err.value.line == 3


def test_yaml_1_2_exponents_are_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\ninput: {shape: [4]}\ndefaults: {sigma_w2: 2e0, sigma_b2: 1e-3}\n"
                    "layers:\n  - dense: {width: 3}\n")  # fmt: skip
    spec = load_spec(path)
    assert float(spec.layers[0].sigma_w2) == 2.0 and float(spec.layers[0].sigma_b2) == 0.001


def _alias_bomb(levels: int = 8) -> str:
    lines = ["name: t", "input: {shape: [4]}", "x:", "  - &l0 {act: tanh}"]
    for i in range(1, levels + 1):
        aliases = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"  - &l{i} {{repeat: {{times: 1, body: [{aliases}]}}}}")
    return "\n".join([*lines, f"layers: [*l{levels}]", ""])


def test_alias_bombs_are_refused_at_once(tmp_path):
    """An 800-byte spec whose aliases nest ten-fold over eight levels (10⁸ layers once
    expanded) is refused while parsing, within a second (issue 15: minutes and 1.5 GB)."""
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    start = time.perf_counter()
    with pytest.raises(SpecError, match="expands to more than 100,000 values") as err:
        load_spec(path)
    assert time.perf_counter() - start < 2 and err.value.line == 1
    load_spec_text = _alias_bomb(3)  # 10³ layers: a legitimate (if odd) use of aliases
    path.write_text(load_spec_text)
    with pytest.raises(SpecError, match="x") as err:  # the unknown key, not the expansion
        load_spec(path)
    assert "expands" not in err.value.message


def test_messages_show_shared_values_briefly():
    """A value aliases expand to 10⁸ items is shown in a few characters, at once."""
    from workbench.spec.fields import show

    value: object = ["x"] * 10
    for _ in range(8):
        value = [value] * 10
    assert len(show(value)) <= 40


def test_unreadable_paths_and_text_are_refused(tmp_path):
    """A FIFO (which would block), a link to a device (which never ends), a lone surrogate in
    a name (which nothing can print) and 400 nested repeats (a RecursionError) are typed
    errors (issue 15)."""
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a regular file"):
        load_spec(fifo)
    device = tmp_path / "zero.yaml"
    device.symlink_to("/dev/zero")
    with pytest.raises(SpecError, match="not a regular file"):
        load_spec(device)
    name = tmp_path / "s.yaml"
    name.write_text('name: "net\\ud800"\ninput: {shape: [4]}\nlayers:\n  - dense: {width: 3}\n')
    with pytest.raises(SpecError, match="lone surrogate") as err:
        load_spec(name)
    assert err.value.line == 1
    err.value.message.encode("utf-8")  # printable
    body: list = [{"dense": {"width": 3}}]
    for _ in range(400):
        body = [{"repeat": {"times": 1, "body": body}}]
    with pytest.raises(SpecError, match="nested too deeply"):
        spec_from_dict({"name": "t", "input": {"shape": [4]}, "layers": body,
                        "defaults": {"sigma_w2": 1.0, "sigma_b2": 0.0}})  # fmt: skip


def test_long_values_give_short_messages(tmp_path):
    """A 10,000-character activation name in a spec: the error keeps both ends of its message
    within a few hundred characters (issue 15: a 10,144-character line)."""
    path = tmp_path / "s.yaml"
    path.write_text("name: t\ninput: {shape: [4]}\nlayers:\n  - act: " + "x" * 10_000 + "\n")
    with pytest.raises(WorkbenchError) as err:
        load_spec(path)
    assert len(str(err.value)) < 600 and "characters left out" in str(err.value)
