"""Units: every registered kernel and block type builds a valid model; configs are validated up front."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spaceevo.latency import MODEL_KERNELS, BlockUnit, KernelUnit, SubnetUnit, get_kernel, list_kernels, make_kernel, make_unit
from spaceevo.latency._quantize import input_feeds
from spaceevo.space import BlockConfig, SearchSpace, get_hyperspace, list_blocks

EXPECTED_KERNELS = {"conv-bn-act", "dwconv-bn-act", "fc", "se", "hswish", "swish", "relu", "add", "add-act",
                    "global-avgpool", "maxpool", "avgpool", "concat"}
SMALL = {"hw": 8, "cin": 16, "cout": 24, "cin2": 8}


def small_kernel(name: str) -> KernelUnit:
    kt = get_kernel(name)
    return KernelUnit(name, {f: v for f, v in SMALL.items() if f in kt.fields})


def run_onnx(model):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, input_feeds(model))[0]


def test_kernel_registry_has_the_issue_list():
    assert EXPECTED_KERNELS <= set(list_kernels())


@pytest.mark.parametrize("name", [k for k in list_kernels() if k not in MODEL_KERNELS])
def test_every_kernel_builds_and_runs_in_onnxruntime(name):
    unit = small_kernel(name)
    out = run_onnx(unit.to_onnx(seed=0))
    flat = unit.flat
    if name == "fc":
        assert out.shape == (1, 24)
    elif name == "global-avgpool":
        assert out.shape == (1, 16, 1, 1)
    else:
        hw = 8 if flat["stride"] in (None, 1) else 4
        assert out.shape == (1, flat["cout"], hw, hw)
    assert np.isfinite(out).all()
    assert unit.kind == "kernel" and unit.type == name
    assert json.loads(json.dumps(unit.config)) == unit.config


def test_kernel_weights_follow_the_seed():
    a, b, c = (make_kernel("conv-bn-act", hw=8, cin=8, cout=8).to_onnx(seed=s) for s in (0, 0, 1))
    assert a.graph.initializer[0].raw_data == b.graph.initializer[0].raw_data
    assert a.graph.initializer[0].raw_data != c.graph.initializer[0].raw_data


def test_kernel_key_is_stable_and_defaults_filled():
    u = make_kernel("conv-bn-act", hw=56, cin=32, cout=64)
    assert u.key == "conv-bn-act hw=56 cin=32 cout=64 k=3 stride=1 act=relu"
    assert u == KernelUnit("conv-bn-act", {"cout": 64, "cin": 32, "hw": 56, "k": 3})
    assert u.macs == 56 * 56 * 64 * 32 * 9


@pytest.mark.parametrize("name, cfg, match", [
    ("conv3d", {"hw": 8}, "unknown kernel 'conv3d'; valid kernels: act, add, add-act"),
    ("conv-bn-act", {"hw": 8, "cin": 8, "cout": 8, "kernel": 3}, r"unknown field\(s\) \['kernel'\]; allowed fields"),
    ("conv-bn-act", {"hw": 8, "cin": 8}, "needs field 'cout'"),
    ("conv-bn-act", {"hw": 8, "cin": 8, "cout": 8, "k": 4}, "k=4 must be an odd positive integer"),
    ("dwconv-bn-act", {"hw": 8, "cin": 8, "stride": 3}, r"stride=3 is not in \[1, 2\]"),
    ("add-act", {"hw": 8, "cin": 8, "act": "gelu"}, "act='gelu' is not in"),
    ("relu", {"hw": 0, "cin": 8}, "hw=0 must be a positive integer"),
])
def test_invalid_kernel_configs_fail_before_building(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        KernelUnit(name, cfg)


@pytest.mark.parametrize("hyperspace", ["onnxw", "mobilew"])
def test_every_block_choice_builds_as_a_unit(hyperspace):
    h = get_hyperspace(hyperspace)
    for choice in h.block_choices:
        cfg = BlockConfig(choice.type, 8, 16, 24, choice.kernel_sizes[0], choice.expand_ratios[0], 2, choice.act)
        unit = BlockUnit(cfg)
        assert unit.kind == "block" and unit.type == cfg.type and unit.key == cfg.to_string()
        assert run_onnx(unit.to_onnx()).shape == (1, 24, 4, 4)
        assert unit.flat == {f: cfg.as_dict()[f] for f in ("hw", "cin", "cout", "k", "e", "stride", "act")}


def test_block_types_cover_the_registry():
    covered = {c.type for h in ("onnxw", "mobilew") for c in get_hyperspace(h).block_choices}
    assert covered <= set(list_blocks())


def test_subnet_unit_is_a_whole_model():
    sp = SearchSpace.parse("onnxw-151122-023231")
    sn = sp.min_subnet()
    u = SubnetUnit(str(sp), str(sn))
    assert u.kind == "model" and u.config == {"space": str(sp), "subnet": str(sn)}
    assert u.key == f"{sp}/{sn}"
    assert run_onnx(u.to_onnx()).shape == (1, 1000)
    assert u.flat["hw"] == sn.resolution


def test_subnet_unit_validates_before_building():
    with pytest.raises(ValueError, match="search space 'onnxw-1511' must look like"):
        SubnetUnit("onnxw-1511", "d1")
    sp = SearchSpace.parse("onnxw-151122-023231")
    bad = str(sp.min_subnet()).replace("_r160", "_r170")
    with pytest.raises(ValueError, match="r=170 is not in onnxw resolutions"):
        SubnetUnit(str(sp), bad)


def test_block_unit_rejects_non_configs():
    with pytest.raises(ValueError, match="BlockUnit needs a BlockConfig"):
        BlockUnit("MobileNetV2ResBlock hw=8")


@pytest.mark.parametrize("unit", [
    BlockUnit(BlockConfig("MobileNetV2ResBlock", 8, 16, 16, 3, 4.0, 1, "relu6")),
    make_kernel("concat", hw=4, cin=8, cin2=16),
    SubnetUnit("onnxw-151122-023231", str(SearchSpace.parse("onnxw-151122-023231").min_subnet())),
])
def test_make_unit_rebuilds_a_stored_unit(unit):
    again = make_unit(unit.kind, unit.type, json.dumps(unit.config))
    assert again.key == unit.key and again.config == unit.config


def test_make_unit_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown unit kind 'layer'; valid kinds: block, kernel, model"):
        make_unit("layer", "x", {})
