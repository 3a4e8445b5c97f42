"""Kernel detection: split an ONNX model into the kernels a runtime executes, with fusion rules as data.

The model is read with ``onnx`` and its shapes inferred; nodes are grouped into kernels by the fusion
rules of a backend and dtype (:data:`DEFAULT_RULES`, or rules measured on a device with
``spaceevo fusion-rules``). The default ort INT8 rules are those of onnxruntime's own QDQ graph
optimisation, checked against the graph it really executes (:func:`executed_graph`, written by
onnxruntime with ``SessionOptions.optimized_model_filepath``): convolutions, Gemm and Add absorb ReLU /
ReLU6 (the requantisation clips), while ops without an integer kernel (HardSwish, HardSigmoid, GELU,
Tanh) run in FP32 between a DequantizeLinear and a QuantizeLinear and are kernels of their own.

Every node ends in a kernel or in ``unsupported`` (with its MACs): nothing is dropped. Constant
sub-graphs (shape arithmetic that the runtime folds), Identity and Dropout are not kernels.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spaceevo.registry import Registry

# module references, not names: _units imports this module (through _model_units) while _kernel_types loads
from . import _kernel_types
from ._quantize import quantize_onnx_int8
from ._units import KernelUnit

MAX_OPSET = 22  # newest default-domain opset this detector (and the pinned onnxruntime) understands
_ACT_OPS = {"Relu": "relu", "HardSwish": "hswish", "HardSigmoid": "hsigmoid", "Sigmoid": "sigmoid", "Gelu": "gelu",
            "Tanh": "tanh", "LeakyRelu": "leakyrelu"}
_FOLDABLE = {"Identity", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape", "Range",
             "Concat", "Slice", "Reshape", "Div", "Mul", "Add", "Sub", "Floor", "Ceil", "Equal", "Where", "Sqrt"}

# Fusion rules per backend-dtype: which activations fuse into a conv / Gemm / Add, which ops run in FP32
# inside an INT8 graph, and which multi-node patterns are one kernel.
_SHIPPED_RULES: dict[str, dict] = {
    "ort-int8": {"conv_acts": ["relu", "relu6"], "fc_acts": ["relu", "relu6"], "add_acts": ["relu", "relu6"],
                 "float_ops": ["hswish", "hsigmoid", "gelu", "tanh"], "patterns": ["se", "swish", "shuffle"]},
    "ort-fp32": {"conv_acts": ["relu", "relu6", "hswish", "hsigmoid", "sigmoid", "tanh", "leakyrelu"],
                 "fc_acts": ["relu", "sigmoid", "tanh", "leakyrelu"], "add_acts": [], "float_ops": [],
                 "patterns": ["se", "swish", "shuffle"]},
    "tflite-int8": {"conv_acts": ["relu", "relu6"], "fc_acts": ["relu", "relu6"], "add_acts": ["relu", "relu6"],
                    "float_ops": [], "patterns": ["se", "swish", "shuffle"]},
    "tflite-fp32": {"conv_acts": ["relu", "relu6"], "fc_acts": ["relu", "relu6"], "add_acts": ["relu", "relu6"],
                    "float_ops": [], "patterns": ["se", "swish", "shuffle"]},
}
RULE_FIELDS = ("conv_acts", "fc_acts", "add_acts", "float_ops", "patterns")
# the registry of default rules, by ``<backend>-<dtype>``
DEFAULT_RULES: Registry[dict] = Registry("fusion rules", plural="fusion rules",
                                         error="no fusion rules {name!r}; known: {choices}")


class ModelInputError(ValueError):
    """A model file the detector cannot read as it stands; the message names the file and the fix."""


def register_fusion_rules(backend: str, dtype: str, rules: dict) -> dict:
    """Ship default fusion rules for ``backend`` and ``dtype`` (a new backend brings its own).

    Parameters
    ----------
    backend : str
    dtype : str
    rules : dict
        The fields of ``RULE_FIELDS`` (lists of names).

    Returns
    -------
    dict
        The registered copy, under ``<backend>-<dtype>``.

    Raises
    ------
    ValueError
        An unknown field, or a field that is not a list.
    """
    return DEFAULT_RULES.register(f"{backend}-{dtype}", copy.deepcopy(check_rules(dict(rules))))


def list_fusion_rules(filter: str | Sequence[str] | None = None) -> list[str]:
    """The ``<backend>-<dtype>`` names with shipped default rules, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns (e.g. ``"*-int8"``); only matching names are listed.

    Returns
    -------
    list of str
    """
    return DEFAULT_RULES.names(filter)


def get_fusion_rules(name: str) -> dict:
    """A copy of the default rules registered as ``name`` (``<backend>-<dtype>``).

    Parameters
    ----------
    name : str

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        ``name`` is not registered; the message lists the known names.
    """
    return copy.deepcopy(DEFAULT_RULES.get(name))


def default_rules(backend: str, dtype: str) -> dict:
    """The shipped fusion rules of ``backend`` and ``dtype`` (ort/tflite/adb, int8/fp32).

    Parameters
    ----------
    backend : str
        ``adb`` uses the ``tflite`` rules.
    dtype : str

    Returns
    -------
    dict
        A copy.

    Raises
    ------
    ValueError
        No rules for this backend and dtype; the message lists the known ones.
    """
    key = f"{'tflite' if backend == 'adb' else backend}-{dtype}"
    if key not in DEFAULT_RULES:
        raise ValueError(f"no fusion rules for backend={backend!r} dtype={dtype!r}; known: {list_fusion_rules()}")
    return get_fusion_rules(key)


def check_rules(rules: dict) -> dict:
    """Validate a rules dict (the fields of :data:`RULE_FIELDS`, lists of names).

    Parameters
    ----------
    rules : dict

    Returns
    -------
    dict
        ``rules`` itself.

    Raises
    ------
    ValueError
        An unknown field, or a field that is not a list.
    """
    bad = sorted(set(rules) - set(RULE_FIELDS) - {"backend", "dtype", "source", "measured", "device", "statistic"})
    if bad:
        raise ValueError(f"fusion rules have unknown field(s) {bad}; fields: {list(RULE_FIELDS)}")
    for f in RULE_FIELDS:
        if not isinstance(rules.get(f, []), list):
            raise ValueError(f"fusion rules field {f!r} must be a list, got {rules.get(f)!r}")
    return rules


for _name, _rules in _SHIPPED_RULES.items():
    DEFAULT_RULES.register(_name, check_rules(copy.deepcopy(_rules)))


@dataclass
class Kernel:
    """One detected kernel: its type and config (a collector kernel unit), the ONNX nodes it covers, MACs."""

    type: str
    config: dict
    ops: list[str]
    macs: int
    fp32: bool = False  # an INT8 graph runs it in FP32 between DequantizeLinear and QuantizeLinear
    supported: bool = True
    op_types: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The collector unit key ``<type> f1=v1 ...``."""
        return self.type + "".join(f" {k}={v}" for k, v in self.config.items())

    def unit(self):
        """The collector's ``KernelUnit`` that times this kernel alone (unsupported kernels have none)."""
        if not self.supported:
            raise ValueError(f"kernel of op(s) {self.op_types} is unsupported: it has no unit to time")
        return KernelUnit(self.type, self.config)

    def elems(self) -> tuple[int, int, int]:
        """(input elements, output elements, weights) from the config (unsupported: from the graph)."""
        if not self.supported:
            return int(self.config.get("in_elems", 0)), int(self.config.get("out_elems", 0)), 0
        return _kernel_types.kernel_shapes(self.type, self.config)

    def as_dict(self) -> dict:
        """JSON-able description."""
        return {"type": self.type, "config": dict(self.config), "ops": list(self.ops), "op_types": list(self.op_types),
                "macs": int(self.macs), "fp32": self.fp32, "supported": self.supported}


@dataclass
class DetectedModel:
    """The kernels of one model under one set of fusion rules, and what could not be mapped."""

    name: str
    kernels: list[Kernel]
    macs: int
    input_shape: tuple[int, ...]
    rules: dict

    @property
    def unsupported(self) -> list[dict]:
        """Per unmappable op type: count, MACs and share of the model's MACs."""
        rows: dict[str, dict] = {}
        for k in self.kernels:
            if not k.supported:
                r = rows.setdefault(k.type, {"op": k.config["op"], "count": 0, "macs": 0})
                r["count"] += 1
                r["macs"] += k.macs
        return [{**r, "macs_share": (r["macs"] / self.macs) if self.macs else 0.0} for r in rows.values()]

    def as_dict(self) -> dict:
        """JSON-able description."""
        return {"name": self.name, "macs": self.macs, "input_shape": list(self.input_shape),
                "kernels": [k.as_dict() for k in self.kernels], "unsupported": self.unsupported}


# -- reading a model ---------------------------------------------------------------------------
def load_onnx(model: Any, input_shape: tuple[int, ...] | list[int] | None = None, origin: str | None = None):
    """An ``onnx.ModelProto`` with static, inferred shapes from a path or a ModelProto.

    Parameters
    ----------
    model : path to an ``.onnx`` file, or an ``onnx.ModelProto``.
    input_shape : fixes the (single) input's shape when the file leaves dimensions symbolic.
    origin : name of the model in error messages (default: the path).

    Returns
    -------
    onnx.ModelProto with value_info filled in.

    Raises
    ------
    ModelInputError when the file is not ONNX, has no static input shape, a dynamic batch or a too new opset.
    """
    import onnx

    name = origin or (str(model) if isinstance(model, (str, Path)) else "the model")
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf DecodeError and friends
            raise ModelInputError(f"{name} is not an ONNX model ({type(exc).__name__}); export it to ONNX first "
                                  "(torch.onnx.export, tf2onnx)") from None
        if not model.graph.node:
            raise ModelInputError(f"{name} is not an ONNX model (no graph nodes); export it to ONNX first")
    elif not isinstance(model, onnx.ModelProto):
        raise ModelInputError(f"{name}: expected an ONNX file path or onnx.ModelProto, got {type(model).__name__}")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > MAX_OPSET:
        raise ModelInputError(f"{name} uses ONNX opset {opset}, newer than {MAX_OPSET} (what this spaceevo and its "
                              f"onnxruntime run); re-export it with opset_version={MAX_OPSET} or lower")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelInputError(f"{name} has {len(inputs)} graph inputs; the kernel detector needs exactly one image "
                              "input")
    dims = inputs[0].type.tensor_type.shape.dim
    if input_shape is not None:
        shape = [int(v) for v in input_shape]
        if dims and len(shape) != len(dims):
            raise ModelInputError(f"{name}: --input-shape {shape} has {len(shape)} dimensions, the input has "
                                  f"{len(dims)}")
        if shape[0] != 1:
            raise ModelInputError(f"{name}: --input-shape {shape} must have batch 1 (1,C,H,W)")
        model = copy.deepcopy(model)
        graph_in = model.graph.input[[i.name for i in model.graph.input].index(inputs[0].name)]
        tshape = graph_in.type.tensor_type.shape
        del tshape.dim[:]
        for v in shape:
            tshape.dim.add().dim_value = v
        del model.graph.value_info[:]
    else:
        if not dims or any(d.dim_value <= 0 for d in dims[1:]):
            raise ModelInputError(f"{name} has no static input shape ({_dims_text(dims)}); give one with "
                                  "--input-shape 1,3,224,224 (input_shape=(1, 3, 224, 224) in Python)")
        if dims[0].dim_value != 1:
            raise ModelInputError(f"{name} has a dynamic or non-1 batch ({_dims_text(dims)}); give "
                                  "--input-shape 1,C,H,W or re-export with batch 1")
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelInputError(f"{name}: ONNX shape inference failed ({type(exc).__name__}: {exc}); check the file "
                              "with onnx.checker") from None
    return model


def _dims_text(dims) -> str:
    return "[" + ", ".join(d.dim_param or (str(d.dim_value) if d.dim_value else "?") for d in dims) + "]"


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Graph:
    """Nodes, shapes, constants, producers and consumers of a shape-inferred model."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        g = model.graph
        self.nodes = list(g.node)
        self.const: dict[str, np.ndarray | None] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape") and all(d.dim_value > 0 for d in tt.shape.dim):
                self.shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
        for name, arr in self.const.items():
            self.shapes.setdefault(name, tuple(arr.shape))
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            for o in n.output:
                self.producer[o] = i
            for x in n.input:
                if x:
                    self.consumers[x].append(i)
        self.outputs = {o.name for o in g.output}
        self.free: set[int] = set()
        for i, n in enumerate(self.nodes):  # constant sub-graphs (shape arithmetic) fold away
            if n.op_type in ("Identity", "Dropout") and n.input and n.input[0] not in self.const:
                self.free.add(i)
                self._alias(n.input[0], n.output[0])
            elif n.op_type == "Constant":
                self.free.add(i)
                a = _attrs(n)
                value = a.get("value")
                self.const[n.output[0]] = numpy_helper.to_array(value) if value is not None else None
            elif n.op_type == "Shape" or (n.op_type in _FOLDABLE and all((not x) or x in self.const for x in n.input)):
                self.free.add(i)
                for o in n.output:
                    self.const.setdefault(o, None)

    def _alias(self, src: str, dst: str) -> None:
        """Identity/Dropout: consumers of ``dst`` read ``src``."""
        if src in self.shapes:
            self.shapes.setdefault(dst, self.shapes[src])

    def data_inputs(self, i: int) -> list[str]:
        return [x for x in self.nodes[i].input if x and x not in self.const]

    def only_consumer(self, tensor: str) -> int | None:
        cs = self.consumers.get(tensor, [])
        return cs[0] if len(cs) == 1 and tensor not in self.outputs else None

    def shape(self, tensor: str) -> tuple[int, ...] | None:
        return self.shapes.get(tensor)


def _hw_c(shape: tuple[int, ...] | None) -> tuple[int, int]:
    """(spatial side, channels) of an NCHW (or NC) tensor; a non-square map uses the side of equal area."""
    if not shape:
        return 1, 1
    if len(shape) >= 4:
        return max(1, int(round(float(np.sqrt(shape[2] * shape[3]))))), int(shape[1])
    if len(shape) == 3:
        return max(1, int(shape[2])), int(shape[1])
    return 1, int(shape[-1])


def _scalar(g: _Graph, name: str) -> float | None:
    v = g.const.get(name)
    return None if v is None else float(np.asarray(v).reshape(-1)[0])


def _clip_act(g: _Graph, node) -> str | None:
    """'relu6' / 'relu' for a Clip(0, 6) / Clip(0, inf), else None."""
    a = _attrs(node)
    lo, hi = a.get("min"), a.get("max")
    if len(node.input) > 1 and node.input[1]:
        lo = _scalar(g, node.input[1])
    if len(node.input) > 2 and node.input[2]:
        hi = _scalar(g, node.input[2])
    if lo is not None and abs(lo) < 1e-6 and hi is not None and abs(hi - 6.0) < 1e-6:
        return "relu6"
    if lo is not None and abs(lo) < 1e-6 and (hi is None or hi > 1e30):
        return "relu"
    return None


def _node_macs(g: _Graph, n) -> int:
    """Multiply-accumulates of one node (Conv, ConvTranspose, Gemm, MatMul; 0 for the rest)."""
    if n.op_type == "Conv":
        w, y = g.shape(n.input[1]), g.shape(n.output[0])
        if w is None or y is None:
            return 0
        return int(np.prod(y[2:])) * int(y[1]) * int(np.prod(w[1:]))
    if n.op_type == "ConvTranspose":
        w, x = g.shape(n.input[1]), g.shape(n.input[0])
        if w is None or x is None:
            return 0
        return int(np.prod(x[2:])) * int(x[1]) * int(np.prod(w[1:]))
    if n.op_type == "Gemm":
        w, y = g.shape(n.input[1]), g.shape(n.output[0])
        if w is None or y is None:
            return 0
        k = w[1] if _attrs(n).get("transB", 0) else w[0]
        return int(np.prod(y)) * int(k)
    if n.op_type == "MatMul":
        a, y = g.shape(n.input[0]), g.shape(n.output[0])
        if a is None or y is None:
            return 0
        return int(np.prod(y)) * int(a[-1])
    return 0


class _Detector:
    """Greedy grouping of nodes (in graph order) into kernels by the fusion rules."""

    def __init__(self, g: _Graph, rules: dict) -> None:
        self.g, self.rules = g, rules
        self.claimed: set[int] = set(g.free)
        self.kernels: list[Kernel] = []
        self.order: list[int] = []  # first node of each kernel: kernels are listed in graph order

    # -- activation look-ahead -----------------------------------------------------------------
    def act_after(self, tensor: str) -> tuple[str, list[int], str] | None:
        """The activation applied to ``tensor`` by its consumer(s): (name, node ids, output tensor)."""
        g = self.g
        i = g.only_consumer(tensor)
        if i is None:
            cs = g.consumers.get(tensor, [])
            return self._swish_at(tensor, cs) if len(cs) == 2 and tensor not in g.outputs else None
        if i in self.claimed:
            return None
        n = g.nodes[i]
        if n.op_type in _ACT_OPS:
            return _ACT_OPS[n.op_type], [i], n.output[0]
        if n.op_type == "Clip":
            act = _clip_act(g, n)
            return (act, [i], n.output[0]) if act else None
        return None

    def _swish_at(self, tensor: str, cs: list[int]):
        """x * sigmoid(x) (swish / SiLU) or x * hardsigmoid(x) (hswish) on ``tensor``."""
        g = self.g
        kinds = {g.nodes[c].op_type: c for c in cs}
        if len(kinds) != 2 or "Mul" not in kinds or not ({"Sigmoid", "HardSigmoid"} & set(kinds)):
            return None
        s_id = kinds.get("Sigmoid", kinds.get("HardSigmoid"))
        m_id = kinds["Mul"]
        s_out = g.nodes[s_id].output[0]
        if s_out in g.nodes[m_id].input and g.only_consumer(s_out) == m_id and not {s_id, m_id} & self.claimed:
            return ("swish" if g.nodes[s_id].op_type == "Sigmoid" else "hswish"), [s_id, m_id], g.nodes[m_id].output[0]
        return None

    def _fused_act(self, tensor: str, allowed: list[str]) -> tuple[str, list[int]]:
        a = self.act_after(tensor)
        if a and a[0] in allowed:
            return a[0], a[1]
        return "none", []

    # -- emit ----------------------------------------------------------------------------------
    def emit(self, ktype: str, config: dict, ids: list[int], macs: int = 0, fp32: bool = False,
             supported: bool = True) -> None:
        ids = sorted(set(ids))
        self.claimed.update(ids)
        nodes = [self.g.nodes[i] for i in ids]
        self.order.append(ids[0])
        self.kernels.append(Kernel(ktype, config, [n.name or n.output[0] for n in nodes], int(macs), fp32, supported,
                                   [n.op_type for n in nodes]))

    def unsupported(self, i: int) -> None:
        g = self.g
        n = g.nodes[i]
        size = lambda names: int(sum(int(np.prod(g.shape(x))) for x in names if g.shape(x)))  # noqa: E731
        self.emit(f"unsupported:{n.op_type}", {"op": n.op_type, "in_elems": size(g.data_inputs(i)),
                                               "out_elems": size(list(n.output))}, [i], macs=_node_macs(g, n),
                  supported=False)

    def run(self) -> list[Kernel]:
        g = self.g
        pats = set(self.rules.get("patterns", []))
        for i, n in enumerate(g.nodes):  # GELU first: its leading Div would otherwise pass for an element-wise op
            if n.op_type == "Erf" and i not in self.claimed:
                self.on_Erf(i)
        for i, n in enumerate(g.nodes):
            if i in self.claimed:
                continue
            op = n.op_type
            if op in ("GlobalAveragePool", "ReduceMean") and "se" in pats and self.try_se(i):
                continue
            if op == "Reshape" and "shuffle" in pats and self.try_shuffle(i):
                continue
            handler = getattr(self, f"on_{op}", None)
            if handler is None and (op in _ACT_OPS or op == "Clip"):
                handler = self.on_act
            if handler is None or handler(i) is False:
                self.unsupported(i)
        return [k for _, k in sorted(zip(self.order, self.kernels), key=lambda t: t[0])]

    # -- per op --------------------------------------------------------------------------------
    def on_Conv(self, i: int):
        g = self.g
        n = g.nodes[i]
        x = g.data_inputs(i)
        w = g.shape(n.input[1])
        if len(x) != 1 or w is None or len(w) != 4 or g.shape(x[0]) is None:
            return False
        a = _attrs(n)
        groups = int(a.get("group", 1))
        hw, cin = _hw_c(g.shape(x[0]))
        cout, k, kw = int(w[0]), int(w[2]), int(w[3])
        stride = int(max(a.get("strides", [1, 1])))
        ids, y = [i], n.output[0]
        bn = g.only_consumer(y)
        if bn is not None and g.nodes[bn].op_type == "BatchNormalization" and bn not in self.claimed:
            ids.append(bn)
            y = g.nodes[bn].output[0]
        act, act_ids = self._fused_act(y, self.rules.get("conv_acts", []))
        ktype = "conv" if groups == 1 else ("dwconv" if groups == cin and cout == cin else "gconv")
        cfg = {"hw": hw, "cin": cin, "cout": cout, "k": k, "kw": kw, "stride": stride, "groups": groups, "act": act}
        self.emit(ktype, cfg, ids + act_ids, macs=_node_macs(g, n))

    def on_BatchNormalization(self, i: int):
        hw, c = _hw_c(self.g.shape(self.g.data_inputs(i)[0]))
        self.emit("bn", {"hw": hw, "cin": c}, [i])

    def _fc(self, i: int, weight_shape, transposed: bool) -> None:
        g = self.g
        n = g.nodes[i]
        cin, cout = (weight_shape[1], weight_shape[0]) if transposed else (weight_shape[0], weight_shape[1])
        ids, y = [i], n.output[0]
        if n.op_type == "MatMul":  # MatMul + Add(bias) is one Gemm
            c = g.only_consumer(y)
            if c is not None and g.nodes[c].op_type == "Add" and len(g.data_inputs(c)) == 1:
                ids.append(c)
                y = g.nodes[c].output[0]
        act, act_ids = self._fused_act(y, self.rules.get("fc_acts", []))
        self.emit("linear", {"cin": int(cin), "cout": int(cout), "act": act}, ids + act_ids, macs=_node_macs(g, n))

    def on_Gemm(self, i: int):
        g = self.g
        n = g.nodes[i]
        w = g.shape(n.input[1])
        if len(g.data_inputs(i)) != 1 or w is None or n.input[1] not in g.const or _attrs(n).get("transA", 0):
            return False
        self._fc(i, w, bool(_attrs(n).get("transB", 0)))

    def on_MatMul(self, i: int):
        g = self.g
        n = g.nodes[i]
        x, w = g.shape(n.input[0]), g.shape(n.input[1])
        if len(g.data_inputs(i)) != 1 or n.input[1] not in g.const or w is None or len(w) != 2 or not x:
            return False
        if len(x) == 2:
            return self._fc(i, w, False)
        # a token-wise linear layer ((1, ..., C) x (C, D), e.g. an MLP on NHWC maps): a 1x1 convolution's work
        tokens = int(np.prod(x[1:-1]))
        hw = max(1, int(round(float(np.sqrt(tokens)))))
        ids, y = [i], n.output[0]
        c = g.only_consumer(y)
        if c is not None and g.nodes[c].op_type == "Add" and len(g.data_inputs(c)) == 1:
            ids.append(c)
            y = g.nodes[c].output[0]
        act, act_ids = self._fused_act(y, self.rules.get("conv_acts", []))
        self.emit("conv", {"hw": hw, "cin": int(w[0]), "cout": int(w[1]), "k": 1, "kw": 1, "stride": 1, "groups": 1,
                           "act": act}, ids + act_ids, macs=_node_macs(g, n))

    def _binary(self, i: int, op: str):
        g = self.g
        n = g.nodes[i]
        xs = g.data_inputs(i)
        if len(xs) == 1:  # x (op) constant: element-wise against a per-channel constant
            hw, c = _hw_c(g.shape(xs[0]))
            self.emit("eltwise", {"hw": hw, "cin": c, "op": op, "act": "none", "shape": "channel"}, [i])
            return None
        shapes = [g.shape(x) for x in xs]
        if len(xs) != 2 or any(s is None for s in shapes):
            return False
        big = max(shapes, key=lambda s: int(np.prod(s)))
        small = min(shapes, key=lambda s: int(np.prod(s)))
        hw, c = _hw_c(big)
        shape = "same" if tuple(big) == tuple(small) else "channel"
        act, act_ids = self._fused_act(n.output[0], self.rules.get("add_acts", []) if op == "add" else [])
        self.emit("eltwise", {"hw": hw, "cin": c, "op": op, "act": act, "shape": shape}, [i] + act_ids)

    def on_Add(self, i: int):
        return self._binary(i, "add")

    def on_Sum(self, i: int):
        return self._binary(i, "add") if len(self.g.data_inputs(i)) == 2 else False

    def on_Mul(self, i: int):
        return self._binary(i, "mul")

    def on_Sub(self, i: int):
        return self._binary(i, "sub")

    def on_Div(self, i: int):
        return self._binary(i, "div")

    def on_act(self, i: int):
        g = self.g
        n = g.nodes[i]
        x = g.data_inputs(i)
        if len(x) != 1:
            return False
        act = _clip_act(g, n) if n.op_type == "Clip" else _ACT_OPS[n.op_type]
        if act is None:
            return False
        ids = [i]
        if act in ("sigmoid", "hsigmoid") and "swish" in self.rules.get("patterns", []):
            sw = self._swish_at(x[0], g.consumers.get(x[0], []))
            if sw:
                act, ids = sw[0], sw[1]
        hw, c = _hw_c(g.shape(x[0]))
        self.emit("act", {"hw": hw, "cin": c, "act": act}, ids, fp32=act in self.rules.get("float_ops", []))

    def on_Erf(self, i: int):
        """GELU as older opsets export it: Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5."""
        g = self.g
        ids = [i]
        x = g.data_inputs(i)[0]
        src = g.producer.get(x)
        if src is not None and src not in self.claimed and g.nodes[src].op_type in ("Div", "Mul") \
                and len(g.data_inputs(src)) == 1:
            ids.append(src)
            x = g.data_inputs(src)[0]
        t = g.nodes[i].output[0]
        for _ in range(3):
            c = g.only_consumer(t)
            if c is None or g.nodes[c].op_type not in ("Add", "Mul") or c in self.claimed:
                break
            ids.append(c)
            t = g.nodes[c].output[0]
        hw, ch = _hw_c(g.shape(x))
        self.emit("act", {"hw": hw, "cin": ch, "act": "gelu"}, ids, fp32="gelu" in self.rules.get("float_ops", []))

    def _pool(self, i: int, op: str):
        g = self.g
        a = _attrs(g.nodes[i])
        hw, c = _hw_c(g.shape(g.data_inputs(i)[0]))
        k = int(max(a.get("kernel_shape", [1])))
        s = int(max(a.get("strides", [1])))
        self.emit("pool", {"hw": hw, "cin": c, "k": k, "stride": s, "op": op}, [i])

    def on_MaxPool(self, i: int):
        return self._pool(i, "max")

    def on_AveragePool(self, i: int):
        return self._pool(i, "avg")

    def _gpool(self, i: int, op: str):
        hw, c = _hw_c(self.g.shape(self.g.data_inputs(i)[0]))
        self.emit("gpool", {"hw": hw, "cin": c, "op": op}, [i])

    def on_GlobalAveragePool(self, i: int):
        return self._gpool(i, "avg")

    def on_GlobalMaxPool(self, i: int):
        return self._gpool(i, "max")

    def on_ReduceMean(self, i: int):
        g = self.g
        n = g.nodes[i]
        axes = _attrs(n).get("axes")
        if axes is None and len(n.input) > 1 and g.const.get(n.input[1]) is not None:
            axes = [int(v) for v in np.asarray(g.const[n.input[1]]).reshape(-1)]
        shape = g.shape(g.data_inputs(i)[0])
        if shape is None or len(shape) != 4 or sorted(int(a) % 4 for a in (axes or [])) != [2, 3]:
            return False
        return self._gpool(i, "avg")

    def on_Concat(self, i: int):
        g = self.g
        xs = g.data_inputs(i)
        out = g.shape(g.nodes[i].output[0])
        if not xs or out is None or len(out) != 4 or int(_attrs(g.nodes[i]).get("axis", 1)) % 4 != 1:
            return False
        hw, c = _hw_c(out)
        self.emit("concat-n", {"hw": hw, "cout": c, "n": len(xs)}, [i])

    def on_Split(self, i: int):
        g = self.g
        shape = g.shape(g.data_inputs(i)[0])
        if shape is None or len(shape) != 4 or int(_attrs(g.nodes[i]).get("axis", 0)) % 4 != 1:
            return False
        hw, c = _hw_c(shape)
        self.emit("split", {"hw": hw, "cin": c, "n": len(g.nodes[i].output)}, [i])

    def on_Slice(self, i: int):
        g = self.g
        shape = g.shape(g.data_inputs(i)[0])
        if shape is None or len(shape) != 4:
            return False
        hw, c = _hw_c(shape)
        self.emit("split", {"hw": hw, "cin": c, "n": 2}, [i])

    def _layout(self, i: int, op: str):
        g = self.g
        xs = g.data_inputs(i)
        if len(xs) != 1:
            return False
        hw, c = _hw_c(g.shape(xs[0]))
        self.emit("layout", {"hw": hw, "cin": c, "op": op}, [i])

    def on_Flatten(self, i: int):
        return self._layout(i, "flatten")

    def on_Reshape(self, i: int):
        return self._layout(i, "reshape")

    def on_Squeeze(self, i: int):
        return self._layout(i, "reshape")

    def on_Unsqueeze(self, i: int):
        return self._layout(i, "reshape")

    def on_Transpose(self, i: int):
        return self._layout(i, "transpose")

    def on_Resize(self, i: int):
        g = self.g
        n = g.nodes[i]
        x, y = g.shape(g.data_inputs(i)[0]), g.shape(n.output[0])
        if x is None or y is None or len(x) != 4:
            return False
        mode = "nearest" if _attrs(n).get("mode", b"nearest") in (b"nearest", "nearest") else "linear"
        hw, c = _hw_c(x)
        self.emit("resize", {"hw": hw, "cin": c, "scale": max(1, int(round(y[2] / x[2]))), "mode": mode}, [i])

    on_Upsample = on_Resize

    def on_Pad(self, i: int):
        g = self.g
        x, y = g.shape(g.data_inputs(i)[0]), g.shape(g.nodes[i].output[0])
        if x is None or y is None or len(x) != 4:
            return False
        hw, c = _hw_c(x)
        self.emit("pad", {"hw": hw, "cin": c, "p": max(1, (y[2] - x[2]) // 2)}, [i])

    def on_Softmax(self, i: int):
        shape = self.g.shape(self.g.data_inputs(i)[0])
        if shape is None:
            return False
        self.emit("softmax", {"cin": int(shape[-1])}, [i])

    # -- patterns ------------------------------------------------------------------------------
    def try_se(self, i: int) -> bool:
        """GAP(x) -> 1x1 conv (+act) -> 1x1 conv (+gate) -> Mul(x, .): one SE kernel."""
        g = self.g
        x = g.data_inputs(i)[0]
        ids, t, convs, acts = [i], g.nodes[i].output[0], [], []
        for _ in range(2):
            c = g.only_consumer(t)
            if c is None or c in self.claimed or g.nodes[c].op_type != "Conv":
                return False
            ids.append(c)
            convs.append(c)
            t = g.nodes[c].output[0]
            a = self.act_after(t)
            if a:
                ids += a[1]
                t = a[2]
            acts.append(a[0] if a else "none")
        m = g.only_consumer(t)
        if m is None or m in self.claimed or g.nodes[m].op_type != "Mul" or x not in g.nodes[m].input:
            return False
        w = g.shape(g.nodes[convs[0]].input[1])
        vocab = _kernel_types.VOCAB
        if acts[1] not in vocab["gate"] or acts[0] not in vocab["act"] or w is None:
            return False
        hw, c = _hw_c(g.shape(x))
        macs = _node_macs(g, g.nodes[convs[0]]) + _node_macs(g, g.nodes[convs[1]])
        self.emit("se-mid", {"hw": hw, "cin": c, "mid": int(w[0]), "act": acts[0], "gate": acts[1]}, ids + [m],
                  macs=macs)
        return True

    def try_shuffle(self, i: int) -> bool:
        """Reshape (5-D) -> Transpose -> Reshape back: one channel-shuffle kernel."""
        g = self.g
        n = g.nodes[i]
        mid = g.shape(n.output[0])
        t = g.only_consumer(n.output[0])
        if mid is None or len(mid) != 5 or t is None or g.nodes[t].op_type != "Transpose":
            return False
        r = g.only_consumer(g.nodes[t].output[0])
        if r is None or g.nodes[r].op_type != "Reshape":
            return False
        hw, c = _hw_c(g.shape(g.data_inputs(i)[0]))
        self.emit("shuffle", {"hw": hw, "cin": c, "groups": int(mid[1])}, [i, t, r])
        return True


def model_macs(model) -> int:
    """Multiply-accumulates of a shape-inferred model (conv, Gemm, MatMul nodes), independent of kernels.

    Parameters
    ----------
    model : onnx.ModelProto
        Shape-inferred (``load_onnx``).

    Returns
    -------
    int
    """
    g = _Graph(model)
    return int(sum(_node_macs(g, n) for i, n in enumerate(g.nodes) if i not in g.free))


def detect_kernels(model: Any, backend: str = "ort", dtype: str = "int8", rules: dict | None = None,
                   input_shape: tuple[int, ...] | None = None) -> DetectedModel:
    """The kernels of an ONNX model (path or ModelProto) as ``backend`` runs it in ``dtype``.

    Parameters
    ----------
    model : path to an ``.onnx`` file or an ``onnx.ModelProto`` (FP32).
    backend, dtype : whose fusion rules to apply (:func:`default_rules`) unless ``rules`` is given.
    rules : fusion rules (``RULE_FIELDS``), e.g. measured on the device with ``spaceevo fusion-rules``.
    input_shape : static input shape for models whose input dimensions are symbolic.

    Returns
    -------
    DetectedModel with its kernels (type, config, ONNX op names, MACs) and ``unsupported`` ops.

    Raises
    ------
    ModelInputError for a file that is not ONNX, has no static input shape, a dynamic batch or a too new opset.
    """
    name = str(model) if isinstance(model, (str, Path)) else (model.graph.name or "model")
    m = load_onnx(model, input_shape)
    rules = check_rules(dict(rules) if rules is not None else default_rules(backend, dtype))
    g = _Graph(m)
    kernels = _Detector(g, rules).run()
    inp = next(i for i in m.graph.input if i.name not in g.const)
    shape = tuple(int(d.dim_value) for d in inp.type.tensor_type.shape.dim)
    return DetectedModel(name, kernels, int(sum(_node_macs(g, n) for j, n in enumerate(g.nodes) if j not in g.free)),
                         shape, rules)


def executed_graph(model: Any, dtype: str = "int8", seed: int = 0):
    """The graph onnxruntime really executes: the (QDQ-quantised, for int8) model after its graph optimisations.

    onnxruntime writes it itself (``SessionOptions.optimized_model_filepath``) at the collector's settings;
    the default fusion rules are checked against it.

    Parameters
    ----------
    model : str, Path or onnx.ModelProto
        An FP32 model.
    dtype : str
        ``int8`` quantises it first (QDQ).
    seed : int
        Seed of the calibration data.

    Returns
    -------
    onnx.ModelProto
        The optimised graph.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    m = load_onnx(model)
    if dtype == "int8":
        m = quantize_onnx_int8(m, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath)


def kernel_type_counts(detected: DetectedModel) -> dict[str, int]:
    """How many kernels of each type a model has.

    Parameters
    ----------
    detected : DetectedModel
        What ``detect_kernels`` returned.

    Returns
    -------
    dict
        ``{kernel type: count}``.
    """
    return dict(Counter(k.type for k in detected.kernels))
