"""Measurable units ("model factories"): one block, one fused operator (kernel) or a whole subnet.

A unit is any object with ``kind`` ('block' | 'kernel' | 'model'), ``type``, ``config`` (JSON-able
dict), ``key`` (stable id), ``to_onnx(seed)`` (FP32 ``onnx.ModelProto``) and ``to_keras(seed)``.
Kernels are registered by name as in nn-Meter's kernel list (conv-bn-act, dwconv-bn-act, fc, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from spaceevo.space import (
    ACTIVATIONS,
    OPSET,
    SE,
    BlockConfig,
    Conv,
    GlobalAvgPool,
    GraphBuilder,
    Linear,
    SearchSpace,
    block_to_keras,
    block_to_onnx,
    conv_out_hw,
    import_keras,
    keras_act,
    keras_conv,
    keras_ops,
    make_divisible,
    subnet_to_keras,
    subnet_to_onnx,
)
from spaceevo.registry import Registry

FLAT_FIELDS: tuple[str, ...] = ("hw", "cin", "cout", "k", "e", "stride", "act")


@runtime_checkable
class Unit(Protocol):
    """What the collector measures: anything that can build itself as ONNX (and Keras)."""

    kind: str
    type: str
    config: dict
    key: str

    def to_onnx(self, seed: int = 0): ...

    def to_keras(self, seed: int = 0): ...


# -- blocks -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockUnit:
    """One block of ``spaceevo.space`` at a concrete :class:`BlockConfig`."""

    block: BlockConfig
    kind: str = field(default="block", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.block, BlockConfig):
            raise ValueError(f"BlockUnit needs a BlockConfig, got {type(self.block).__name__}")

    @property
    def type(self) -> str:
        """The block type name."""
        return self.block.type

    @property
    def config(self) -> dict:
        """The BlockConfig fields."""
        return self.block.as_dict()

    @property
    def key(self) -> str:
        """``BlockConfig.to_string()``."""
        return self.block.to_string()

    @property
    def flat(self) -> dict:
        """Feature columns of the store."""
        return {f: self.config[f] for f in FLAT_FIELDS}

    @property
    def macs(self) -> int:
        """Multiply-accumulates."""
        return self.block.macs

    def to_onnx(self, seed: int = 0):
        """FP32 ONNX model of the block."""
        return block_to_onnx(self.block, seed)

    def to_keras(self, seed: int = 0):
        """Keras model of the block."""
        return block_to_keras(self.block, seed)


# -- whole subnets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SubnetUnit:
    """A whole subnet of a search space (kind 'model'), e.g. ``SubnetUnit('onnxw-151122-023231', 'd1#...')``."""

    space: str
    subnet: str
    kind: str = field(default="model", init=False)
    type: str = field(default="subnet", init=False)

    def __post_init__(self) -> None:
        sp = SearchSpace.parse(str(self.space))
        sn = sp.parse_subnet(str(self.subnet))  # validated before anything is built
        object.__setattr__(self, "space", str(sp))
        object.__setattr__(self, "subnet", str(sn))

    @property
    def config(self) -> dict:
        """``{"space": ..., "subnet": ...}``."""
        return {"space": self.space, "subnet": self.subnet}

    @property
    def key(self) -> str:
        """``<space>/<subnet>``."""
        return f"{self.space}/{self.subnet}"

    def _parsed(self):
        sp = SearchSpace.parse(self.space)
        return sp, sp.parse_subnet(self.subnet)

    @property
    def flat(self) -> dict:
        """Feature columns: hw is the input resolution, cin the input channels."""
        sp, sn = self._parsed()
        return {"hw": sn.resolution, "cin": sp.hyperspace.in_channels, "cout": sp.hyperspace.n_classes,
                "k": None, "e": None, "stride": None, "act": None}

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole subnet."""
        sp, sn = self._parsed()
        return sum(b.config.macs for b in sp.blocks(sn))

    def to_onnx(self, seed: int = 0):
        """FP32 ONNX model of the whole subnet."""
        sp, sn = self._parsed()
        return subnet_to_onnx(sp, sn, seed)

    def to_keras(self, seed: int = 0):
        """Keras model of the whole subnet."""
        sp, sn = self._parsed()
        return subnet_to_keras(sp, sn, seed)


# -- kernels (fused operators) ----------------------------------------------------------------
@dataclass(frozen=True)
class KernelType:
    """A registered kernel: its config fields (with defaults; ``None`` = required) and builders."""

    name: str
    fields: dict
    inputs: Callable[[dict], list[tuple[int, ...]]]
    onnx: Callable  # (cfg, graph builder, input names) -> output name
    keras: Callable  # (cfg, keras, input tensors, seed) -> output tensor
    flat: Callable[[dict], dict]
    macs: Callable[[dict], int]
    doc: str
    check: Callable[[dict], dict] | None = None  # validates a config itself (else the generic field rules)


_KERNELS: Registry[KernelType] = Registry("kernel")
_REQUIRED = None


def register_kernel(name: str, fields: dict, inputs: Callable, keras: Callable, flat: Callable,
                    macs: Callable = lambda c: 0, check: Callable[[dict], dict] | None = None) -> Callable:
    """Decorator: register an ONNX builder ``(cfg, b, xs) -> y`` as kernel ``name`` with its other parts.

    Parameters
    ----------
    name : str
        Kernel name, as in nn-Meter's kernel list (``"conv-bn-act"``).
    fields : dict
        Config fields and their defaults (``_REQUIRED`` for required ones).
    inputs : callable
        ``config -> [NCHW input shapes]``.
    keras : callable
        ``(config, keras, input tensors, seed) -> output tensor``.
    flat : callable
        ``config -> feature columns of the store``.
    macs : callable
        ``config -> multiply-accumulates``.
    check : callable, optional
        ``config -> config``: validates a full config (defaults filled in) when the generic rules (positive
        integers, odd k, stride 1 or 2, act in ACTIVATIONS) do not fit the kernel.

    Returns
    -------
    callable
        The decorator; it returns the builder unchanged.
    """

    def deco(fn: Callable) -> Callable:
        _KERNELS.register(name, KernelType(name, dict(fields), inputs, fn, keras, flat, macs,
                                           (fn.__doc__ or "").strip(), check))
        return fn

    return deco


def list_kernels(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered kernels, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns (e.g. ``"*conv*"``); only matching names are listed.

    Returns
    -------
    list of str
    """
    return _KERNELS.names(filter)


def get_kernel(name: str) -> KernelType:
    """The kernel type called ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    KernelType

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid kernels.
    """
    return _KERNELS.get(name)


def _check_config(kt: KernelType, config: dict) -> dict:
    unknown = sorted(set(config) - set(kt.fields))
    if unknown:
        raise ValueError(f"kernel {kt.name!r} got unknown field(s) {unknown}; allowed fields: {sorted(kt.fields)}")
    if kt.check is not None:
        missing = [n for n, d in kt.fields.items() if d is _REQUIRED and n not in config]
        if missing:
            raise ValueError(f"kernel {kt.name!r} needs field(s) {missing}; fields: {sorted(kt.fields)}")
        return kt.check({n: config.get(n, d) for n, d in kt.fields.items()})
    cfg = {}
    for name, default in kt.fields.items():
        value = config.get(name, default)
        if value is _REQUIRED:
            raise ValueError(f"kernel {kt.name!r} needs field {name!r}; fields: {sorted(kt.fields)}")
        if name == "act":
            if value not in ACTIVATIONS:
                raise ValueError(f"act={value!r} is not in {list(ACTIVATIONS)}")
        else:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer (kernel {kt.name!r})")
            if name == "k" and value % 2 == 0:
                raise ValueError(f"k={value!r} must be an odd positive integer (1, 3, 5, 7, ...)")
            if name == "stride" and value not in (1, 2):
                raise ValueError(f"stride={value!r} is not in [1, 2]")
        cfg[name] = value
    return cfg


@dataclass(frozen=True)
class KernelUnit:
    """One fused operator at a concrete config, e.g. ``KernelUnit('conv-bn-act', {'hw': 56, 'cin': 32, ...})``."""

    type: str
    config: dict
    kind: str = field(default="kernel", init=False)

    def __post_init__(self) -> None:
        kt = get_kernel(self.type)
        object.__setattr__(self, "config", _check_config(kt, dict(self.config)))

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> str:
        """``<kernel> f1=v1 f2=v2 ...`` in field order."""
        return self.type + "".join(f" {k}={v}" for k, v in self.config.items())

    @property
    def flat(self) -> dict:
        """Feature columns of the store (what applies to this kernel)."""
        out = dict.fromkeys(FLAT_FIELDS)
        out.update(get_kernel(self.type).flat(self.config))
        return out

    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for element-wise and pooling kernels)."""
        return int(get_kernel(self.type).macs(self.config))

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """NCHW input shapes (batch 1)."""
        return get_kernel(self.type).inputs(self.config)

    def to_onnx(self, seed: int = 0):
        """FP32 ONNX model of the kernel."""
        from onnx import TensorProto, checker, helper, shape_inference

        kt = get_kernel(self.type)
        b = GraphBuilder(seed)
        shapes = self.input_shapes
        names = ["input"] if len(shapes) == 1 else [f"input{i}" for i in range(len(shapes))]
        y = kt.onnx(self.config, b, names)
        graph = helper.make_graph(
            b.nodes, self.type,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in zip(names, shapes)],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], initializer=b.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="spaceevo")
        model.ir_version = min(model.ir_version, 10)
        model = shape_inference.infer_shapes(model)  # fills in the output shape
        checker.check_model(model)
        return model

    def to_keras(self, seed: int = 0):
        """Keras model of the kernel (NHWC inputs, batch 1)."""
        keras = import_keras()
        kt = get_kernel(self.type)
        shapes = self.input_shapes
        inputs = [keras.Input(shape=(s[1],) if len(s) == 2 else (s[2], s[3], s[1]), batch_size=1,
                              name="input" if len(shapes) == 1 else f"input{i}") for i, s in enumerate(shapes)]
        y = kt.keras(self.config, keras, inputs, seed)
        return keras.Model(inputs if len(inputs) > 1 else inputs[0], y, name=self.type.replace("-", "_"))


def make_kernel(name: str, **config: Any) -> KernelUnit:
    """Shorthand: ``make_kernel('relu', hw=56, cin=32)``.

    Parameters
    ----------
    name : str
        A registered kernel.
    **config
        The kernel's config fields.

    Returns
    -------
    KernelUnit

    Raises
    ------
    ValueError
        Unknown kernel or a bad config field.
    """
    return KernelUnit(name, config)


def make_unit(kind: str, type: str, config: dict | str) -> "BlockUnit | KernelUnit | SubnetUnit":
    """Rebuild a unit from its stored ``kind``, ``type`` and ``config`` (dict or JSON).

    Parameters
    ----------
    kind : str
        ``block``, ``kernel`` or ``model``.
    type : str
        Block type, kernel name, or ``subnet``.
    config : dict or str
        The stored config (JSON text or dict).

    Returns
    -------
    BlockUnit, KernelUnit or SubnetUnit

    Raises
    ------
    ValueError
        Unknown kind, or a config its unit type rejects.
    """
    cfg = json.loads(config) if isinstance(config, str) else dict(config)
    if kind == "block":
        return BlockUnit(BlockConfig(**cfg))
    if kind == "kernel":
        return KernelUnit(type, cfg)
    if kind == "model" and type == "onnx-model":
        return _model_units.OnnxModelUnit(cfg["path"], cfg.get("name"), cfg.get("family"), cfg.get("seed"),
                                          cfg.get("input_shape"))
    if kind == "model":
        return SubnetUnit(cfg["space"], cfg["subnet"])
    raise ValueError(f"unknown unit kind {kind!r}; valid kinds: block, kernel, model")


# -- the kernel registry ----------------------------------------------------------------------
def _img(c: dict, ch: str = "cin") -> tuple[int, ...]:
    return (1, c[ch], c["hw"], c["hw"])


def _conv_macs(c: dict, cout: int, groups: int) -> int:
    out = conv_out_hw(c["hw"], c["k"], c["stride"])
    return out * out * cout * (c["cin"] // groups) * c["k"] * c["k"]


_CONV = {"hw": _REQUIRED, "cin": _REQUIRED, "cout": _REQUIRED, "k": 3, "stride": 1, "act": "relu"}
_DW = {"hw": _REQUIRED, "cin": _REQUIRED, "k": 3, "stride": 1, "act": "relu"}
_HWC = {"hw": _REQUIRED, "cin": _REQUIRED}
_POOL = {"hw": _REQUIRED, "cin": _REQUIRED, "k": 3, "stride": 2}


def _conv_op(c: dict) -> Conv:
    return Conv(c["cin"], c["cout"], c["k"], c["stride"], act=c["act"])


def _dw_op(c: dict) -> Conv:
    return Conv(c["cin"], c["cin"], c["k"], c["stride"], groups=c["cin"], act=c["act"])


@register_kernel("conv-bn-act", _CONV, lambda c: [_img(c)],
                 keras=lambda c, K, xs, s: keras_conv(K, xs[0], _conv_op(c), s),
                 flat=lambda c: dict(c), macs=lambda c: _conv_macs(c, c["cout"], 1))
def _k_conv(c, b, xs):
    """k x k convolution + folded BatchNorm + activation."""
    return b.conv(xs[0], _conv_op(c))


@register_kernel("dwconv-bn-act", _DW, lambda c: [_img(c)],
                 keras=lambda c, K, xs, s: keras_conv(K, xs[0], _dw_op(c), s),
                 flat=lambda c: {**c, "cout": c["cin"]}, macs=lambda c: _conv_macs(c, c["cin"], c["cin"]))
def _k_dwconv(c, b, xs):
    """k x k depthwise convolution + folded BatchNorm + activation."""
    return b.conv(xs[0], _dw_op(c))


def _keras_fc(c, K, xs, s):
    return K.layers.Dense(c["cout"], kernel_initializer=K.initializers.GlorotUniform(seed=s))(xs[0])


@register_kernel("fc", {"cin": _REQUIRED, "cout": _REQUIRED}, lambda c: [(1, c["cin"])], keras=_keras_fc,
                 flat=lambda c: {**c, "hw": 1}, macs=lambda c: c["cin"] * c["cout"])
def _k_fc(c, b, xs):
    """Fully connected layer with bias (Gemm)."""
    return b.ops(xs[0], (Linear(c["cin"], c["cout"]),))


def _se_op(c: dict) -> SE:
    return SE(c["cin"], make_divisible(c["cin"] / 4))


def _keras_se(c, K, xs, s):
    return keras_ops(K, xs[0], (_se_op(c),), s)


@register_kernel("se", _HWC, lambda c: [_img(c)], keras=_keras_se, flat=lambda c: {**c, "cout": c["cin"]},
                 macs=lambda c: 2 * c["cin"] * make_divisible(c["cin"] / 4))
def _k_se(c, b, xs):
    """Squeeze-and-Excitation: GAP -> 1x1 ReLU -> 1x1 hard-sigmoid -> scale (mid = md(cin/4))."""
    return b.ops(xs[0], (_se_op(c),))


def _register_act(name: str) -> None:
    def onnx_fn(c, b, xs):
        return b.act(xs[0], name)

    onnx_fn.__doc__ = f"Element-wise {name} activation."
    register_kernel(name, _HWC, lambda c: [_img(c)], keras=lambda c, K, xs, s: keras_act(K, xs[0], name),
                    flat=lambda c: {**c, "cout": c["cin"], "act": name})(onnx_fn)


for _a in ("hswish", "swish", "relu"):
    _register_act(_a)


def _keras_add(c, K, xs, s):
    y = K.layers.Add()(xs)
    return keras_act(K, y, c["act"]) if "act" in c else y


@register_kernel("add", _HWC, lambda c: [_img(c), _img(c)], keras=_keras_add, flat=lambda c: {**c, "cout": c["cin"]})
def _k_add(c, b, xs):
    """Element-wise addition of two tensors (a residual join)."""
    return b.node("Add", list(xs))


@register_kernel("add-act", {**_HWC, "act": "relu"}, lambda c: [_img(c), _img(c)], keras=_keras_add,
                 flat=lambda c: {**c, "cout": c["cin"]})
def _k_add_act(c, b, xs):
    """Element-wise addition followed by an activation."""
    return b.act(b.node("Add", list(xs)), c["act"])


@register_kernel("global-avgpool", _HWC, lambda c: [_img(c)],
                 keras=lambda c, K, xs, s: K.layers.GlobalAveragePooling2D(keepdims=True)(xs[0]),
                 flat=lambda c: {**c, "cout": c["cin"]})
def _k_gap(c, b, xs):
    """Global average pooling to 1x1."""
    return b.ops(xs[0], (GlobalAvgPool(),))


def _pool_onnx(op: str):
    def fn(c, b, xs):
        p = (c["k"] - 1) // 2
        return b.node(op, [xs[0]], kernel_shape=[c["k"]] * 2, strides=[c["stride"]] * 2, pads=[p] * 4)

    return fn


def _pool_keras(layer: str):
    return lambda c, K, xs, s: getattr(K.layers, layer)(c["k"], c["stride"], padding="same")(xs[0])


register_kernel("maxpool", _POOL, lambda c: [_img(c)], keras=_pool_keras("MaxPooling2D"),
                flat=lambda c: {**c, "cout": c["cin"]})(_pool_onnx("MaxPool"))
register_kernel("avgpool", _POOL, lambda c: [_img(c)], keras=_pool_keras("AveragePooling2D"),
                flat=lambda c: {**c, "cout": c["cin"]})(_pool_onnx("AveragePool"))
_KERNELS.register("maxpool", KernelType(**{**_KERNELS.get("maxpool").__dict__,
                                           "doc": "k x k max pooling with stride."}))
_KERNELS.register("avgpool", KernelType(**{**_KERNELS.get("avgpool").__dict__,
                                           "doc": "k x k average pooling with stride."}))


@register_kernel("concat", {**_HWC, "cin2": _REQUIRED}, lambda c: [_img(c), _img(c, "cin2")],
                 keras=lambda c, K, xs, s: K.layers.Concatenate(axis=-1)(xs),
                 flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"] + c["cin2"]})
def _k_concat(c, b, xs):
    """Channel concatenation of two tensors (cin and cin2 channels)."""
    return b.node("Concat", list(xs), axis=1)


# the kernel types of arbitrary CNNs (conv, dwconv, linear, se-mid, ...), found by the kernel detector
from . import _kernel_types  # noqa: E402,F401
from . import _model_units  # noqa: E402  (whole ONNX models: make_unit's "onnx-model" type)
