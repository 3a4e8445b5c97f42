"""Build ONNX models from the layer IR with ``onnx.helper``, BatchNorm folded into conv biases."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._ops import SE, Conv, GlobalAvgPool, Linear, Op, Residual, Shape, output_shape

OPSET = 21


class GraphBuilder:
    """Collects ONNX nodes and seeded initialisers while IR ops are emitted (``conv``, ``ops``, ``act``, ...).

    Parameters
    ----------
    seed : int
        Seed of the random weights.
    """

    def __init__(self, seed: int) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(self.numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        if act == "relu":
            return self.node("Relu", [x])
        if act == "relu6":
            lo = self.const("zero", np.array(0.0))
            hi = self.const("six", np.array(6.0))
            return self.node("Clip", [x, lo, hi])
        if act == "hswish":
            return self.node("HardSwish", [x])
        if act == "hsigmoid":
            return self.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
        if act == "sigmoid":
            return self.node("Sigmoid", [x])
        if act == "swish":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        raise ValueError(f"unknown activation {act!r}")

    def conv(self, x: str, op: Conv) -> str:
        fan_in = (op.cin // op.groups) * op.k * op.k
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (op.cout, op.cin // op.groups, op.k, op.k))
        inputs = [x, self.const("w", w)]
        if op.bn or op.bias:  # a folded BatchNorm leaves a per-channel bias; FeatureMix has neither
            inputs.append(self.const("b", self.rng.normal(0.0, 0.05, op.cout)))
        pad = (op.k - 1) // 2
        y = self.node("Conv", inputs, kernel_shape=[op.k, op.k], strides=[op.stride, op.stride],
                      pads=[pad] * 4, group=op.groups)
        return self.act(y, op.act)

    def ops(self, x: str, ops: Sequence[Op]) -> str:
        for op in ops:
            if isinstance(op, Conv):
                x = self.conv(x, op)
            elif isinstance(op, SE):
                s = self.node("GlobalAveragePool", [x])
                s = self.conv(s, Conv(op.channels, op.mid, 1, act="relu", bn=False, bias=True))
                s = self.conv(s, Conv(op.mid, op.channels, 1, act="hsigmoid", bn=False, bias=True))
                x = self.node("Mul", [x, s])
            elif isinstance(op, Residual):
                body = self.ops(x, op.body)
                short = self.ops(x, op.shortcut)
                x = self.act(self.node("Add", [body, short]), op.act)
            elif isinstance(op, GlobalAvgPool):
                x = self.node("GlobalAveragePool", [x])
            elif isinstance(op, Linear):
                x = self.node("Flatten", [x], axis=1)
                w = self.rng.normal(0.0, np.sqrt(1.0 / op.cin), (op.cout, op.cin))
                b = self.rng.normal(0.0, 0.01, op.cout)
                x = self.node("Gemm", [x, self.const("fc_w", w), self.const("fc_b", b)], transB=1)
            else:
                raise TypeError(f"unknown op {op!r}")
        return x


def ops_to_onnx(ops: Sequence[Op], cin: int, hw: int, seed: int = 0, name: str = "spaceevo",
                flat_input: bool = False):
    """An ``onnx.ModelProto`` for ``ops`` on a (1, cin, hw, hw) input (or (1, cin) if flat)."""
    from onnx import TensorProto, checker, helper

    b = GraphBuilder(seed)
    in_shape = [1, cin] if flat_input else [1, cin, hw, hw]
    x = "input"
    y = b.ops(x, ops)
    out = output_shape(tuple(ops), Shape(cin, 1 if flat_input else hw))
    out_shape = [1, out.c] if out.flat else [1, out.c, out.hw, out.hw]
    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="spaceevo")
    model.ir_version = min(model.ir_version, 10)  # readable by older onnxruntime releases too
    checker.check_model(model)
    return model
