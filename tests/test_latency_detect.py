"""Kernel detection on hand-built graphs: one test per fusion rule, MAC sums, bad input, the executed graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from spaceevo.latency import (ModelInputError, default_rules, detect_kernels, executed_graph, kernel_type_counts,
                              model_macs)
from spaceevo.space import OPSET, ZooGraph, ZooTensor, build_zoo_model, list_zoo_families


def _model(g: ZooGraph, out: ZooTensor, c: int = 16, hw: int = 16, opset: int = OPSET):
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, hw, hw])],
                              [helper.make_tensor_value_info(out.name, TensorProto.FLOAT, None)], initializer=g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _x(c: int = 16, hw: int = 16) -> ZooTensor:
    return ZooTensor("input", c, hw)


def _types(m, **kw) -> list[tuple[str, dict]]:
    return [(k.type, k.config) for k in detect_kernels(m, **kw).kernels]


def test_conv_relu6_fuses_and_hswish_runs_apart_in_int8():
    g = ZooGraph(0)
    y = g.cv(g.cv(_x(), 32, 3, 2, act="relu6"), 32, 3, 1, groups=32, act="hswish")
    d = detect_kernels(_model(g, y), "ort", "int8")
    assert [(k.type, k.config["act"]) for k in d.kernels[:2]] == [("conv", "relu6"), ("dwconv", "none")]
    assert d.kernels[2].type == "act" and d.kernels[2].config["act"] == "hswish" and d.kernels[2].fp32
    assert len(d.kernels) == 3
    # FP32 onnxruntime fuses the hard-swish into the depthwise conv
    assert [k.config.get("act") for k in detect_kernels(_model(g, y), "ort", "fp32").kernels] == ["relu6", "hswish"]


def test_residual_join_fuses_relu():
    g = ZooGraph(0)
    x = _x()
    y = g.add(g.cv(g.cv(x, 16, 3), 16, 3, act=None), x, "relu")
    kinds = _types(_model(g, y))
    assert kinds[-1] == ("eltwise", {"hw": 16, "cin": 16, "op": "add", "act": "relu", "shape": "same"})
    assert len(kinds) == 3


def test_se_is_one_kernel():
    g = ZooGraph(0)
    y = g.se(g.cv(_x(), 24, 1), 8, "relu", "hsigmoid")
    kinds = _types(_model(g, y))
    assert kinds[1] == ("se-mid", {"hw": 16, "cin": 24, "mid": 8, "act": "relu", "gate": "hsigmoid"})
    assert len(kinds) == 2


def test_channel_shuffle_and_split():
    g = ZooGraph(0)
    a, b = g.split(g.cv(_x(), 32, 1), [16, 16])
    y = g.shuffle(g.cat([a, g.cv(b, 16, 3, groups=16)]))
    counts = kernel_type_counts(detect_kernels(_model(g, y)))
    assert counts == {"conv": 1, "split": 1, "dwconv": 1, "concat-n": 1, "shuffle": 1}


def test_mixed_kernel_split_concat():
    g = ZooGraph(0)
    parts = g.split(_x(24), [8, 8, 8])
    y = g.cat([g.cv(p, 8, k, groups=8) for p, k in zip(parts, (3, 5, 7))])
    d = detect_kernels(_model(g, y, c=24))
    assert [k.config.get("k") for k in d.kernels if k.type == "dwconv"] == [3, 5, 7]
    assert d.kernels[-1].config == {"hw": 16, "cout": 24, "n": 3}


def test_swish_gelu_resize_pad_softmax():
    g = ZooGraph(0)
    y = g.cv(_x(), 16, 3, act="swish")
    z = g.node("Div", [y.name, g.const("sqrt2", np.array(1.4142))])
    e = g.node("Erf", [z])
    e = g.node("Add", [e, g.const("one", np.array(1.0))])
    e = g.node("Mul", [y.name, e])
    e = g.node("Mul", [e, g.const("half", np.array(0.5))])
    r = g.node("Resize", [e, "", g.const("sc", np.array([1, 1, 2, 2]))], mode="nearest")
    p = g.node("Pad", [r, g.shape_const([0, 0, 1, 1, 0, 0, 1, 1])])
    s = g.node("Softmax", [g.node("Flatten", [g.node("GlobalAveragePool", [p])], axis=1)], axis=1)
    d = detect_kernels(_model(g, ZooTensor(s, 16, 1)))
    assert [(k.type, k.config.get("act")) for k in d.kernels] == [
        ("conv", "none"), ("act", "swish"), ("act", "gelu"), ("resize", None), ("pad", None), ("gpool", None),
        ("layout", None), ("softmax", None)]
    assert d.kernels[2].fp32 and d.kernels[3].config["hw"] == 16 and d.kernels[4].config["hw"] == 32


def test_unsupported_op_is_listed_with_its_macs_and_never_dropped():
    g = ZooGraph(0)
    y = g.cv(_x(), 8, 3)
    w = g.const("wt", np.random.default_rng(0).normal(size=(8, 4, 2, 2)))
    t = g.node("ConvTranspose", [y.name, w], strides=[2, 2])
    lrn = g.node("LRN", [t], size=3)
    m = _model(g, ZooTensor(lrn, 4, 32))
    d = detect_kernels(m)
    rows = {r["op"]: r for r in d.unsupported}
    assert set(rows) == {"ConvTranspose", "LRN"} and rows["LRN"]["count"] == 1
    assert rows["ConvTranspose"]["macs"] == 16 * 16 * 8 * 4 * 4 and 0 < rows["ConvTranspose"]["macs_share"] < 1
    assert sum(k.macs for k in d.kernels) == d.macs == model_macs(onnx.shape_inference.infer_shapes(m))


@pytest.mark.parametrize("family", list_zoo_families())
def test_kernel_macs_sum_to_the_model_macs(family):
    model, entry = build_zoo_model(family, 1, 64, tiny=True)
    d = detect_kernels(model, "ort", "int8")
    assert sum(k.macs for k in d.kernels) == d.macs == entry["macs"]
    assert not d.unsupported
    for k in d.kernels:
        assert k.unit().key == k.key  # every kernel is a collector unit


def test_rules_as_data_change_the_grouping():
    g = ZooGraph(0)
    y = g.cv(_x(), 16, 3, act="hswish")
    rules = default_rules("ort", "int8")
    assert len(detect_kernels(_model(g, y), rules=rules).kernels) == 2
    rules["conv_acts"].append("hswish")
    assert len(detect_kernels(_model(g, y), rules=rules).kernels) == 1
    with pytest.raises(ValueError, match="unknown field"):
        detect_kernels(_model(g, y), rules={"conv_act": []})


def test_default_int8_rules_match_what_onnxruntime_executes():
    g = ZooGraph(0)
    x = g.cv(_x(), 16, 3, act="relu")
    y = g.add(g.cv(x, 16, 3, act="hswish"), x, "relu")
    ops = [n.op_type for n in executed_graph(_model(g, y), "int8").graph.node]
    assert ops.count("QLinearConv") == 2 and "Relu" not in ops and "QLinearAdd" in ops  # relu fused, add+relu fused
    assert {"HardSwish", "HardSigmoid"} & set(ops) and "DequantizeLinear" in ops  # hswish in FP32 between DQ and Q
    d = detect_kernels(_model(g, y), "ort", "int8")
    assert [(k.type, k.config["act"], k.fp32) for k in d.kernels] == [
        ("conv", "relu", False), ("conv", "none", False), ("act", "hswish", True), ("eltwise", "relu", False)]


def test_bad_input(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_bytes(b"this is not a protobuf at all \xff\xfe")
    with pytest.raises(ModelInputError, match="notes.onnx is not an ONNX model"):
        detect_kernels(bad)
    g = ZooGraph(0)
    y = g.cv(_x(), 8, 3)
    m = _model(g, y)
    dyn = onnx.ModelProto()
    dyn.CopyFrom(m)
    dyn.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    path = tmp_path / "dyn.onnx"
    onnx.save(dyn, str(path))
    with pytest.raises(ModelInputError, match="dyn.onnx has no static input shape.*--input-shape"):
        detect_kernels(path)
    assert detect_kernels(path, input_shape=(1, 16, 20, 20)).kernels[0].config["hw"] == 20
    dyn.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 16
    dyn.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(dyn, str(path))
    with pytest.raises(ModelInputError, match="dynamic or non-1 batch"):
        detect_kernels(path)
    new = _model(g, y, opset=30)
    with pytest.raises(ModelInputError, match="opset 30.*opset_version=22"):
        detect_kernels(new)


def test_token_wise_matmul_is_a_pointwise_conv():
    g = ZooGraph(0)
    t = g.node("Transpose", ["input"], perm=[0, 2, 3, 1])
    m = g.node("MatMul", [t, g.const("w", np.ones((16, 64)))])
    m = g.node("Add", [m, g.const("b", np.zeros(64))])
    d = detect_kernels(_model(g, ZooTensor(m, 64, 16)))
    assert [(k.type, k.config.get("k"), k.config.get("cout")) for k in d.kernels] == [
        ("layout", None, None), ("conv", 1, 64)]
    assert d.kernels[1].macs == 16 * 16 * 16 * 64 == d.macs


def test_factorised_kernels_keep_their_shape():
    g = ZooGraph(0)
    w = g.const("w17", np.random.default_rng(0).normal(size=(8, 16, 1, 7)))
    y = g.node("Relu", [g.node("Conv", ["input", w], kernel_shape=[1, 7], pads=[0, 3, 0, 3])])
    d = detect_kernels(_model(g, ZooTensor(y, 8, 16)))
    assert d.kernels[0].config == {"hw": 16, "cin": 16, "cout": 8, "k": 1, "kw": 7, "stride": 1, "groups": 1,
                                   "act": "relu"}
    assert d.kernels[0].unit().macs == d.macs == 16 * 16 * 8 * 16 * 7


def test_convs_sharing_a_bias_through_identity_still_run_in_int8():
    # torch.onnx constant folding shares equal tensors through Identity nodes; quantize_static alone leaves
    # the convolution that reads a shared bias through one in FP32 (DequantizeLinear -> Conv -> QuantizeLinear)
    rng = np.random.default_rng(0)
    w1, w2 = (onnx.numpy_helper.from_array(rng.normal(size=(16, 16, 3, 3)).astype(np.float32), n) for n in "ab")
    bias = onnx.numpy_helper.from_array(np.zeros(16, np.float32), "bias")
    nodes = [helper.make_node("Identity", ["bias"], ["bias_2"]),
             helper.make_node("Conv", ["input", "a", "bias"], ["y1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y1"], ["r1"]),
             helper.make_node("Conv", ["r1", "b", "bias_2"], ["y2"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
                              initializer=[w1, w2, bias])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 10
    ops = [n.op_type for n in executed_graph(m, "int8").graph.node]
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops, ops
    assert [k.type for k in detect_kernels(m).kernels] == ["conv", "conv"]
