"""Search spaces and subnets: round trips, sampling, extremes and every error path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spaceevo.space import BlockConfig, SearchSpace, Subnet, get_block, get_hyperspace, list_hyperspaces, subnets_macs

SPACE = "onnxw-151122-023231"


@st.composite
def spaces(draw) -> SearchSpace:
    """A random search space of a random registered hyperspace."""
    h = get_hyperspace(draw(st.sampled_from(list_hyperspaces())))
    blocks = [draw(st.integers(0, len(h.block_choices) - 1)) for _ in h.stages]
    windows = [draw(st.integers(0, s.n_windows - 1)) for s in h.stages]
    return SearchSpace(h, tuple(blocks), tuple(windows))


@settings(max_examples=60, deadline=None)
@given(spaces(), st.integers(0, 2**32 - 1))
def test_round_trips_and_sample_validates(space: SearchSpace, seed: int) -> None:
    assert SearchSpace.parse(str(space)) == space
    (subnet,) = space.sample(1, seed)
    assert Subnet.parse(str(subnet)) == subnet
    assert space.parse_subnet(str(subnet)) == subnet
    assert space.validate(subnet) is subnet


@settings(max_examples=25, deadline=None)
@given(spaces(), st.integers(0, 2**32 - 1))
def test_sample_macs_between_min_and_max(space: SearchSpace, seed: int) -> None:
    lo, mid, hi = subnets_macs(space, [space.min_subnet(), space.sample(1, seed)[0], space.max_subnet()])
    assert lo <= mid <= hi


def test_sampling_is_seeded_and_shapes_are_chained() -> None:
    sp = SearchSpace.parse(SPACE)
    assert sp.sample(5, 3) == sp.sample(5, 3)
    assert sp.sample(5, 3) != sp.sample(5, 4)
    assert sp.sample(0, 1) == []
    blocks = sp.blocks(sp.max_subnet())
    assert [b.stage for b in blocks[-3:]] == ["final_expand", "feature_mix", "logits"]
    for prev, nxt in zip(blocks[:-1], blocks[1:]):
        out = prev.config.output_shape
        assert nxt.config.cin == out[1]
        if nxt.stage != "logits":
            assert nxt.config.hw == out[2]
    # stride 2 exactly on the first block of each strided stage
    for b_prev, b in zip(blocks[:-1], blocks[1:]):
        if b.config.stride == 2:
            assert b.stage != b_prev.stage


def test_min_max_and_size() -> None:
    sp = SearchSpace.parse(SPACE)
    mn, mx = sp.min_subnet(), sp.max_subnet()
    assert mn.resolution == 160 and mx.resolution == 224
    assert str(mn).startswith("d1#1#2#2#2#2#2#1_")
    assert sp.size > 10**20
    info = sp.subnet_info(mn)
    assert info["flops_m"] < sp.subnet_info(mx)["flops_m"]


SUB = "d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240#240#320_" \
      "e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160"


def _swap(field: str, pos: int, value: str) -> str:
    parts = SUB.split("_")
    i = "dkwer".index(field)
    items = parts[i][1:].split("#")
    items[pos] = value
    parts[i] = field + "#".join(items)
    return "_".join(parts)


@pytest.mark.parametrize(("text", "match"), [
    ("hello", r"must have the fields d, k, w, e, r"),
    ("d1_k3_w16_e0", r"must have the fields d, k, w, e, r"),
    (SUB.replace("_k", "_x"), r"must have the fields"),
    (_swap("k", 2, "x"), r"k\[2\]='x' is not a number"),
    (_swap("e", 3, "four"), r"e\[3\]='four' is not a number"),
    (SUB.replace("_r160", "_r160#192"), r"r must hold one resolution"),
])
def test_malformed_subnet_strings(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Subnet.parse(text)
    with pytest.raises(ValueError, match=match):
        SearchSpace.parse(SPACE).parse_subnet(text)


def test_subnet_must_be_string() -> None:
    with pytest.raises(ValueError, match="subnet must be a string"):
        Subnet.parse(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "match"), [
    (_swap("d", 2, "5"), r"d\[2\]=5 is not in stage1 depths \[2, 3, 4\]"),
    (_swap("d", 0, "2"), r"d\[0\]=2 is not in first_conv depths \[1\]"),
    (SUB.replace("d1#1#2#2#2#2#2#1", "d1#1#2#2#2#2#2"), r"d has 7 entries; onnxw needs 8"),
    (_swap("k", 3, "9"), r"k\[3\]=9 is not in stage1 MobileNetV2ResBlock kernel sizes \[3, 5\]"),
    (_swap("k", 0, "5"), r"k\[0\]=5 is not in first_conv"),
    (_swap("w", 5, "72"), r"w\[5\]=72 is not in stage2 window 2 widths \[64, 80\]"),
    (_swap("w", 0, "24"), r"w\[0\]=24 is not in first_conv widths \[16, 32\]"),
    (_swap("e", 4, "5.0"), r"e\[4\]=5.0 is not in stage2 FusedMBConvResBlock expand ratios \[1.0, 2.0, 3.0, 4.0\]"),
    (_swap("e", 0, "1.0"), r"e\[0\]=1.0 is not in first_conv"),
    (SUB.replace("_r160", "_r100"), r"r=100 is not in onnxw resolutions \[160, 176, 192, 208, 224\]"),
    (SUB.replace("_k3#3#3#", "_k3#3#", 1), r"k has 12 entries but the depths sum to 13 blocks"),
    (SUB.replace("_w16#16#", "_w16#", 1), r"w has 12 entries but the depths sum to 13 blocks"),
    (SUB.replace("_e0#0.5#", "_e0#", 1), r"e has 12 entries but the depths sum to 13 blocks"),
])
def test_inconsistent_subnets(text: str, match: str) -> None:
    sp = SearchSpace.parse(SPACE)
    with pytest.raises(ValueError, match=match):
        sp.parse_subnet(text)


@pytest.mark.parametrize(("text", "match"), [
    ("onnxw", r"must look like 'onnxw-151122-023231'"),
    ("onnxw-15112a-023231", r"must look like"),
    ("onnxw_151122_023231", r"must look like"),
    ("nopew-151122-023231", r"nopew"),
    ("onnxw-15112-023231", r"block digits '15112' must have 6 digits"),
    ("onnxw-151122-0232310", r"window digits '0232310' must have 6 digits"),
    ("onnxw-171122-023231", r"block digit 1 \(stage2\)=7 is not in 0..5"),
    ("mobilew-122229-155400", r"block digit 5 \(stage6\)=9 is not in 0..6"),
    ("onnxw-151122-043231", r"window digit 1 \(stage2\)=4 is not in 0..3"),
    ("onnxw-151122-023239", r"window digit 5 \(stage6\)=9 is not in 0..3"),
])
def test_bad_space_strings(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SearchSpace.parse(text)


def test_bad_hyperspace_message_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"mobilew.*onnxw|onnxw.*mobilew"):
        SearchSpace.parse("nopew-151122-023231")


def test_negative_sample_count() -> None:
    with pytest.raises(ValueError, match=r"n=-1 must be >= 0"):
        SearchSpace.parse(SPACE).sample(-1, 0)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(type="NoSuchBlock", hw=8, cin=8, cout=8), r"unknown block type 'NoSuchBlock'; valid block types: .*ResNetBlock"),
    (dict(type="ResNet", hw=0, cin=8, cout=8, e=1.0), r"hw=0 must be a positive integer"),
    (dict(type="ResNet", hw=8, cin=-1, cout=8, e=1.0), r"cin=-1 must be a positive integer"),
    (dict(type="ResNet", hw=8, cin=8, cout=2.5, e=1.0), r"cout=2.5 must be a positive integer"),
    (dict(type="ResNet", hw=8, cin=8, cout=8, k=4, e=1.0), r"k=4 must be an odd positive integer"),
    (dict(type="ResNet", hw=8, cin=8, cout=8, e=1.0, stride=3), r"stride=3 is not in \[1, 2\]"),
    (dict(type="ResNet", hw=8, cin=8, cout=8, e=1.0, act="gelu"), r"act='gelu' is not in \["),
    (dict(type="ResNet", hw=8, cin=8, cout=8, e=0), r"e=0: ResNetBlock needs an expand ratio > 0"),
    (dict(type="FirstConv", hw=8, cin=3, cout=8, e=2.0), r"e=2.0: FirstConvBlock takes no expand ratio"),
    (dict(type="Logits", hw=1, cin=8, cout=10, k=3), r"LogitsBlock takes k in \[0, 1\]"),
])
def test_bad_block_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BlockConfig(**kwargs)


def test_block_config_parse_and_errors() -> None:
    cfg = BlockConfig("MobileNetV2Res", 112, 16, 32, 3, 4, 2, "relu6")
    assert cfg.type == "MobileNetV2ResBlock"
    assert BlockConfig.parse(cfg.to_string()) == cfg
    assert BlockConfig.parse("MobileNetV2ResBlock act=relu6 stride=2 e=4 k=3 cout=32 cin=16 hw=112") == cfg
    with pytest.raises(ValueError, match="empty block description"):
        BlockConfig.parse("  ")
    with pytest.raises(ValueError, match=r"bad block field 'foo=1'"):
        BlockConfig.parse("ResNetBlock hw=8 foo=1")
    with pytest.raises(ValueError, match=r"block field hw='x' is not a number"):
        BlockConfig.parse("ResNetBlock hw=x")
    with pytest.raises(ValueError, match=r"lacks required field\(s\) \['cin', 'cout'\]"):
        BlockConfig.parse("ResNetBlock hw=8")
    with pytest.raises(ValueError, match=r"unknown block type 'Nope'"):
        get_block("Nope")
