import pytest

from workbench.compile.load import read_spec_data
from workbench.sweep.grid import GridError, apply_cell, cells, parse_axis, parse_values


def test_values_linear_log_and_list():
    assert parse_values("0:1:3", "k") == (0.0, 0.5, 1.0)
    assert parse_values("1e-3:1e-1:3:log", "k") == pytest.approx((1e-3, 1e-2, 1e-1))
    assert parse_values("2,5", "k") == (2.0, 5.0)
    for bad in ("1:2", "a:b:3", "1:2:0", "0:1:3:lin", "1,nan", "-1:1:3:log"):
        with pytest.raises(GridError):
            parse_values(bad, "k")


def test_shorthands_and_paths_resolve_against_the_spec(tanh_spec):
    raw, _ = read_spec_data(tanh_spec)
    assert parse_axis("sigma_w2=1,2", raw).target == "defaults.sigma_w2"
    depth = parse_axis("depth=2:8:4", raw)
    assert depth.target == "layers[0].repeat.times" and depth.values == (2, 4, 6, 8)
    width = parse_axis("layers[0].repeat.body[0].dense.width=8,16", raw)
    assert width.values == (8, 16) and all(isinstance(v, int) for v in width.values)
    assert parse_axis("lr=0.1,0.2", raw).is_setting


@pytest.mark.parametrize("text, message", [
    ("layers[3].repeat.times=1,2", "no item"),
    ("layers[0].conv.width=1,2", "no key"),
    ("depth=2:9:4", "whole numbers"),
    ("steps=1.5,2", "whole numbers"),
    ("sigma_w2=1,1", "repeats"),
    ("nothing", "cannot read --grid"),
    ("layers..x=1", "cannot read the spec path"),
])  # fmt: skip
def test_bad_axes_are_typed_errors(tanh_spec, text, message):
    raw, _ = read_spec_data(tanh_spec)
    with pytest.raises(GridError, match=message):
        parse_axis(text, raw)


def test_a_cell_sets_its_own_copy_even_through_yaml_aliases(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text("name: a\ninput: {shape: [4]}\ndefaults: {sigma_w2: 1, sigma_b2: 0}\n"
                    "layers:\n  - &d {dense: {width: 4}}\n  - *d\n")  # fmt: skip
    raw, _ = read_spec_data(path)
    axis = parse_axis("layers[1].dense.width=7", raw)
    (cell,) = list(cells([axis]))
    data, settings = apply_cell(raw, [axis], cell)
    assert data["layers"][1]["dense"]["width"] == 7
    assert data["layers"][0]["dense"]["width"] == 4  # the alias's other use is untouched
    assert raw["layers"][1]["dense"]["width"] == 4 and settings == {}


def test_cells_span_the_product_last_axis_fastest(tanh_spec):
    raw, _ = read_spec_data(tanh_spec)
    axes = [parse_axis("sigma_w2=1,2", raw), parse_axis("depth=2,3,4", raw)]
    found = list(cells(axes))
    assert [c.index for c in found] == [(i, j) for i in range(2) for j in range(3)]
    assert found[1].values == (("sigma_w2", 1.0), ("depth", 3))


def test_gamma_sets_every_batch_norm(tmp_path):
    path = tmp_path / "bn.yaml"
    path.write_text(
        "name: b\ninput: {shape: [4]}\ndefaults: {sigma_w2: 2, sigma_b2: 0.1}\nlayers:\n"
        "  - dense: {width: 4}\n  - repeat: {times: 2, body: "
        "[{bn: {gamma: 1}}, {act: relu}, {dense: {width: 4}}]}\n  - bn: {}\n"
    )
    raw, _ = read_spec_data(path)
    axis = parse_axis("gamma=0.5,2", raw)
    assert axis.paths == ("layers[1].repeat.body[0].bn.gamma", "layers[2].bn.gamma")
    data, _ = apply_cell(raw, [axis], list(cells([axis]))[1])
    assert data["layers"][1]["repeat"]["body"][0]["bn"]["gamma"] == 2.0
    assert data["layers"][2]["bn"] == {"gamma": 2.0}
    with pytest.raises(GridError, match="two grid axes"):
        from workbench.sweep.grid import check_axes

        check_axes([axis, parse_axis("layers[2].bn.gamma=1", raw)])
    path.write_text(path.read_text().replace("bn: {}", "bn"))
    raw, _ = read_spec_data(path)
    with pytest.raises(GridError, match="bare `bn`"):
        parse_axis("gamma=1", raw)
