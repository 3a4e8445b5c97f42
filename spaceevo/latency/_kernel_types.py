"""Kernel types of arbitrary CNNs (what the kernel detector finds), registered as collector kernel units.

Each type has a config of scalar fields, an ONNX builder (so the collector can time it alone, INT8 or
FP32) and a Keras builder (TFLite). Categorical fields (``act``, ``op``, ``gate``, ``mode``) take values
from the vocabularies below; everything else is a positive integer. Spatial tensors are square
(``hw``); convolutions pad by ``(k - 1) // 2``.
"""

from __future__ import annotations

import numpy as np

from spaceevo.space import Conv

from ._units import _REQUIRED, register_kernel

ACTS: tuple[str, ...] = ("none", "relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "gelu", "tanh",
                         "leakyrelu")
VOCAB: dict[str, tuple[str, ...]] = {
    "act": ACTS, "gate": ("hsigmoid", "sigmoid"), "op": ("add", "mul", "sub", "div", "max", "avg", "flatten",
                                                         "reshape", "transpose"),
    "mode": ("nearest", "linear"), "shape": ("same", "channel"),
}
VOCAB_OF_KERNELS = VOCAB  # the public name
_OPS_OF = {"eltwise": ("add", "mul", "sub", "div"), "pool": ("max", "avg"), "gpool": ("max", "avg"),
           "layout": ("flatten", "reshape", "transpose")}
MODEL_KERNELS: tuple[str, ...] = ("conv", "dwconv", "gconv", "linear", "eltwise", "act", "pool", "gpool", "concat-n",
                                  "split", "shuffle", "layout", "resize", "pad", "softmax", "se-mid", "bn")


def field_choices(kernel: str, field: str) -> tuple[str, ...]:
    """The allowed values of a categorical field of a model kernel type.

    Parameters
    ----------
    kernel : str
        A model kernel type (``MODEL_KERNELS``).
    field : str
        One of its categorical fields (``act``, ``op``, ...).

    Returns
    -------
    tuple of str
    """
    return _OPS_OF.get(kernel, VOCAB["op"]) if field == "op" else VOCAB[field]


def _checker(name: str):
    def check(cfg: dict) -> dict:
        out = {}
        if "kw" in cfg and cfg["kw"] in (None, 0):
            cfg = {**cfg, "kw": cfg.get("k")}
        for field, value in cfg.items():
            if field in VOCAB:
                allowed = field_choices(name, field)
                if value not in allowed:
                    raise ValueError(f"kernel {name!r}: {field}={value!r} is not in {list(allowed)}")
            else:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"kernel {name!r}: {field}={value!r} must be a positive integer")
                value = int(value)
            out[field] = value
        if name in ("dwconv", "gconv") and (out["cin"] % out["groups"] or out["cout"] % out["groups"]):
            raise ValueError(f"kernel {name!r}: groups={out['groups']} must divide cin={out['cin']} and "
                             f"cout={out['cout']}")
        if name == "shuffle" and out["cin"] % out["groups"]:
            raise ValueError(f"kernel 'shuffle': groups={out['groups']} must divide cin={out['cin']}")
        return out

    return check


def _img(c: dict, ch: str = "cin") -> tuple[int, ...]:
    return (1, c[ch], c["hw"], c["hw"])


def _out(hw: int, k: int, s: int) -> int:
    return (hw + 2 * ((k - 1) // 2) - k) // s + 1


def _act(b, x: str, act: str) -> str:
    if act == "none":
        return x
    if act in ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish"):
        return b.act(x, act)
    if act == "gelu":
        return b.node("Gelu", [x])
    if act == "tanh":
        return b.node("Tanh", [x])
    return b.node("LeakyRelu", [x], alpha=0.1)


def _i64(b, values) -> str:
    name = b.name("shape")
    b.inits.append(b.numpy_helper.from_array(np.array(values, dtype=np.int64), name))
    return name


def _conv_onnx(c, b, xs):
    if c["kw"] == c["k"]:
        return _act(b, b.conv(xs[0], Conv(c["cin"], c["cout"], c["k"], c["stride"], groups=c["groups"])), c["act"])
    kh, kw, g = c["k"], c["kw"], c["groups"]  # a 1 x 7 / 7 x 1 convolution (Inception's factorised kernels)
    w = b.rng.normal(0.0, np.sqrt(2.0 / (c["cin"] // g * kh * kw)), (c["cout"], c["cin"] // g, kh, kw))
    y = b.node("Conv", [xs[0], b.const("w", w), b.const("b", b.rng.normal(0.0, 0.05, c["cout"]))],
               kernel_shape=[kh, kw], strides=[c["stride"]] * 2, pads=[(kh - 1) // 2, (kw - 1) // 2] * 2, group=g)
    return _act(b, y, c["act"])


def _conv_macs(c: dict) -> int:
    o = _out(c["hw"], max(c["k"], c["kw"]), c["stride"])
    return o * o * c["cout"] * (c["cin"] // c["groups"]) * c["k"] * c["kw"]


def _keras_act(K, y, act: str):
    if act == "none":
        return y
    if act == "relu":
        return K.layers.ReLU()(y)
    if act == "relu6":
        return K.layers.ReLU(6.0)(y)
    if act == "hswish":
        return K.layers.Activation("hard_swish")(y) if hasattr(K.activations, "hard_swish") else \
            K.layers.Multiply()([y, K.layers.ReLU(6.0)(y + 3.0) / 6.0])
    if act == "hsigmoid":
        return K.layers.Activation("hard_sigmoid")(y)
    if act == "swish":
        return K.layers.Activation("swish")(y)
    if act == "gelu":
        return K.layers.Activation("gelu")(y)
    if act == "leakyrelu":
        return K.layers.LeakyReLU(0.1)(y)
    return K.layers.Activation(act)(y)


def _keras_conv(c, K, xs, s):
    init = K.initializers.GlorotUniform(seed=s)
    groups = c["groups"]
    if groups == c["cin"] and c["cout"] == c["cin"] and c["kw"] == c["k"]:
        y = K.layers.DepthwiseConv2D(c["k"], c["stride"], padding="same", depthwise_initializer=init)(xs[0])
    else:
        y = K.layers.Conv2D(c["cout"], (c["k"], c["kw"]), c["stride"], padding="same", groups=groups,
                            kernel_initializer=init)(xs[0])
    return _keras_act(K, y, c["act"])


_CONV = {"hw": _REQUIRED, "cin": _REQUIRED, "cout": _REQUIRED, "k": 3, "kw": 0, "stride": 1, "groups": 1,
         "act": "none"}  # kw: the kernel's width when it is not square (0: kw = k)
for _name, _doc in (("conv", "Dense k x k convolution (BatchNorm folded) + fused activation."),
                    ("dwconv", "Depthwise k x k convolution (groups = cin) + fused activation."),
                    ("gconv", "Grouped k x k convolution + fused activation.")):
    def _fn(c, b, xs):
        return _conv_onnx(c, b, xs)
    _fn.__doc__ = _doc
    register_kernel(_name, _CONV, lambda c: [_img(c)], keras=_keras_conv, flat=lambda c: {
        k: c[k] for k in ("hw", "cin", "cout", "k", "stride", "act")}, macs=_conv_macs, check=_checker(_name))(_fn)


def _linear_onnx(c, b, xs):
    w = b.rng.normal(0.0, np.sqrt(1.0 / c["cin"]), (c["cout"], c["cin"]))
    y = b.node("Gemm", [xs[0], b.const("fc_w", w), b.const("fc_b", b.rng.normal(0, 0.01, c["cout"]))], transB=1)
    return _act(b, y, c["act"])


register_kernel("linear", {"cin": _REQUIRED, "cout": _REQUIRED, "act": "none"}, lambda c: [(1, c["cin"])],
                keras=lambda c, K, xs, s: _keras_act(K, K.layers.Dense(c["cout"])(xs[0]), c["act"]),
                flat=lambda c: {"hw": 1, "cin": c["cin"], "cout": c["cout"], "act": c["act"]},
                macs=lambda c: c["cin"] * c["cout"], check=_checker("linear"))(_linear_onnx)


def _eltwise_onnx(c, b, xs):
    """Element-wise binary op of two tensors (shape='channel': the second is (1, cin, 1, 1)) + activation."""
    return _act(b, b.node(c["op"].capitalize(), list(xs)), c["act"])


def _keras_eltwise(c, K, xs, s):
    layer = {"add": K.layers.Add, "mul": K.layers.Multiply, "sub": K.layers.Subtract}.get(c["op"])
    y = layer()(xs) if layer else xs[0] / xs[1]
    return _keras_act(K, y, c["act"])


register_kernel("eltwise", {"hw": _REQUIRED, "cin": _REQUIRED, "op": "add", "act": "none", "shape": "same"},
                lambda c: [_img(c), (1, c["cin"], 1, 1) if c["shape"] == "channel" else _img(c)], keras=_keras_eltwise,
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"], "act": c["act"]},
                check=_checker("eltwise"))(_eltwise_onnx)


def _act_onnx(c, b, xs):
    """A stand-alone activation (int8 ort: hswish, hsigmoid, gelu, tanh run in FP32 between DQ and Q)."""
    return _act(b, xs[0], c["act"])


_HWC = {"hw": _REQUIRED, "cin": _REQUIRED}
register_kernel("act", {**_HWC, "act": "relu"}, lambda c: [_img(c)],
                keras=lambda c, K, xs, s: _keras_act(K, xs[0], c["act"]),
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"], "act": c["act"]},
                check=_checker("act"))(_act_onnx)


def _pool_onnx(c, b, xs):
    """k x k max or average pooling with stride, padding (k - 1) // 2."""
    p = (c["k"] - 1) // 2
    op = "MaxPool" if c["op"] == "max" else "AveragePool"
    return b.node(op, [xs[0]], kernel_shape=[c["k"]] * 2, strides=[c["stride"]] * 2, pads=[p] * 4)


def _keras_pool(c, K, xs, s):
    layer = K.layers.MaxPooling2D if c["op"] == "max" else K.layers.AveragePooling2D
    return layer(c["k"], c["stride"], padding="same")(xs[0])


register_kernel("pool", {**_HWC, "k": 3, "stride": 2, "op": "max"}, lambda c: [_img(c)], keras=_keras_pool,
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"], "k": c["k"], "stride": c["stride"]},
                check=_checker("pool"))(_pool_onnx)


def _gpool_onnx(c, b, xs):
    """Global average or max pooling to 1 x 1."""
    return b.node("GlobalAveragePool" if c["op"] == "avg" else "GlobalMaxPool", [xs[0]])


register_kernel("gpool", {**_HWC, "op": "avg"}, lambda c: [_img(c)],
                keras=lambda c, K, xs, s: (K.layers.GlobalAveragePooling2D if c["op"] == "avg" else
                                           K.layers.GlobalMaxPooling2D)(keepdims=True)(xs[0]),
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]}, check=_checker("gpool"))(_gpool_onnx)


def _parts(total: int, n: int) -> list[int]:
    base = [total // n] * n
    for i in range(total - sum(base)):
        base[i] += 1
    return [max(1, v) for v in base]


def _concat_onnx(c, b, xs):
    """Channel concatenation of n tensors (cout channels in all, split evenly)."""
    return b.node("Concat", list(xs), axis=1)


register_kernel("concat-n", {"hw": _REQUIRED, "cout": _REQUIRED, "n": 2},
                lambda c: [(1, p, c["hw"], c["hw"]) for p in _parts(c["cout"], c["n"])],
                keras=lambda c, K, xs, s: K.layers.Concatenate(axis=-1)(xs),
                flat=lambda c: {"hw": c["hw"], "cin": c["cout"], "cout": c["cout"]},
                check=_checker("concat-n"))(_concat_onnx)


def _split_onnx(c, b, xs):
    """Channel split into n parts, concatenated back (a unit needs every output consumed)."""
    outs = [b.name("split") for _ in range(c["n"])]
    b.nodes.append(b.helper.make_node("Split", [xs[0], _i64(b, _parts(c["cin"], c["n"]))], outs, name=outs[0],
                                      axis=1))
    return b.node("Concat", outs, axis=1) if c["n"] > 1 else outs[0]


def _keras_split(c, K, xs, s):
    cuts = list(np.cumsum(_parts(c["cin"], c["n"]))[:-1])
    return K.layers.Concatenate(axis=-1)(K.ops.split(xs[0], [int(v) for v in cuts], axis=-1))


register_kernel("split", {**_HWC, "n": 2}, lambda c: [_img(c)], keras=_keras_split,
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]}, check=_checker("split"))(_split_onnx)


def _shuffle_onnx(c, b, xs):
    """Channel shuffle: Reshape (1, g, c/g, h, w) -> Transpose -> Reshape."""
    g, ch, hw = c["groups"], c["cin"], c["hw"]
    y = b.node("Reshape", [xs[0], _i64(b, [1, g, ch // g, hw, hw])])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return b.node("Reshape", [y, _i64(b, [1, ch, hw, hw])])


def _keras_shuffle(c, K, xs, s):
    g, ch, hw = c["groups"], c["cin"], c["hw"]
    y = K.layers.Reshape((hw, hw, g, ch // g))(xs[0])
    y = K.layers.Permute((1, 2, 4, 3))(y)
    return K.layers.Reshape((hw, hw, ch))(y)


register_kernel("shuffle", {**_HWC, "groups": 2}, lambda c: [_img(c)], keras=_keras_shuffle,
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]},
                check=_checker("shuffle"))(_shuffle_onnx)


def _layout_onnx(c, b, xs):
    """Data movement: Flatten, Reshape to (1, c, h*w) or Transpose to NHWC."""
    if c["op"] == "flatten":
        return b.node("Flatten", [xs[0]], axis=1)
    if c["op"] == "reshape":
        return b.node("Reshape", [xs[0], _i64(b, [1, c["cin"], c["hw"] * c["hw"]])])
    return b.node("Transpose", [xs[0]], perm=[0, 2, 3, 1])


def _keras_layout(c, K, xs, s):
    if c["op"] == "flatten":
        return K.layers.Flatten()(xs[0])
    if c["op"] == "reshape":
        return K.layers.Reshape((c["hw"] * c["hw"], c["cin"]))(xs[0])
    return K.layers.Permute((3, 1, 2))(xs[0])


register_kernel("layout", {**_HWC, "op": "flatten"}, lambda c: [_img(c)], keras=_keras_layout,
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]},
                check=_checker("layout"))(_layout_onnx)


def _resize_onnx(c, b, xs):
    """Resize by an integer scale (nearest or linear)."""
    scales = b.const("scales", np.array([1, 1, c["scale"], c["scale"]], dtype=np.float32))
    return b.node("Resize", [xs[0], "", scales], mode=c["mode"])


register_kernel("resize", {**_HWC, "scale": 2, "mode": "nearest"}, lambda c: [_img(c)],
                keras=lambda c, K, xs, s: K.layers.UpSampling2D(c["scale"], interpolation="nearest" if c["mode"] ==
                                                                "nearest" else "bilinear")(xs[0]),
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]},
                check=_checker("resize"))(_resize_onnx)


def _pad_onnx(c, b, xs):
    """Zero padding of p pixels on each side."""
    p = c["p"]
    return b.node("Pad", [xs[0], _i64(b, [0, 0, p, p, 0, 0, p, p])])


register_kernel("pad", {**_HWC, "p": 1}, lambda c: [_img(c)],
                keras=lambda c, K, xs, s: K.layers.ZeroPadding2D(c["p"])(xs[0]),
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]}, check=_checker("pad"))(_pad_onnx)


def _softmax_onnx(c, b, xs):
    """Softmax over cin classes."""
    return b.node("Softmax", [xs[0]], axis=1)


register_kernel("softmax", {"cin": _REQUIRED}, lambda c: [(1, c["cin"])],
                keras=lambda c, K, xs, s: K.layers.Softmax()(xs[0]),
                flat=lambda c: {"hw": 1, "cin": c["cin"], "cout": c["cin"]}, check=_checker("softmax"))(_softmax_onnx)


def _se_onnx(c, b, xs):
    """Squeeze-and-Excitation: GAP -> 1x1 (act) -> 1x1 (gate) -> scale, any mid width."""
    s = b.node("GlobalAveragePool", [xs[0]])
    s = _act(b, b.conv(s, Conv(c["cin"], c["mid"], 1, bn=False, bias=True)), c["act"])
    s = b.act(b.conv(s, Conv(c["mid"], c["cin"], 1, bn=False, bias=True)), c["gate"])
    return b.node("Mul", [xs[0], s])


def _keras_se(c, K, xs, s):
    y = K.layers.GlobalAveragePooling2D(keepdims=True)(xs[0])
    y = _keras_act(K, K.layers.Conv2D(c["mid"], 1)(y), c["act"])
    y = _keras_act(K, K.layers.Conv2D(c["cin"], 1)(y), c["gate"])
    return K.layers.Multiply()([xs[0], y])


register_kernel("se-mid", {**_HWC, "mid": _REQUIRED, "act": "relu", "gate": "hsigmoid"}, lambda c: [_img(c)],
                keras=_keras_se, flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"], "act": c["act"]},
                macs=lambda c: 2 * c["cin"] * c["mid"], check=_checker("se-mid"))(_se_onnx)


def _bn_onnx(c, b, xs):
    """A stand-alone BatchNormalization (inference)."""
    ch = c["cin"]
    ins = [xs[0]] + [b.const(n, v) for n, v in (("g", np.ones(ch)), ("b", np.zeros(ch)), ("m", np.zeros(ch)),
                                                  ("v", np.ones(ch)))]
    return b.node("BatchNormalization", ins)


register_kernel("bn", dict(_HWC), lambda c: [_img(c)], keras=lambda c, K, xs, s: K.layers.BatchNormalization()(xs[0]),
                flat=lambda c: {"hw": c["hw"], "cin": c["cin"], "cout": c["cin"]}, check=_checker("bn"))(_bn_onnx)


def kernel_shapes(ktype: str, c: dict) -> tuple[int, int, int]:
    """(input elements, output elements, weights) of a model kernel config: features beside its fields.

    Parameters
    ----------
    ktype : str
        A model kernel type.
    c : dict
        Its config.

    Returns
    -------
    (int, int, int)
    """
    hw = c.get("hw", 1)
    if ktype in ("conv", "dwconv", "gconv"):
        o = _out(hw, max(c["k"], c["kw"]), c["stride"])
        return hw * hw * c["cin"], o * o * c["cout"], c["cout"] * (c["cin"] // c["groups"]) * c["k"] * c["kw"]
    if ktype == "linear":
        return c["cin"], c["cout"], c["cin"] * c["cout"]
    if ktype == "pool":
        o = _out(hw, c["k"], c["stride"])
        return hw * hw * c["cin"], o * o * c["cin"], 0
    if ktype == "gpool":
        return hw * hw * c["cin"], c["cin"], 0
    if ktype == "concat-n":
        return hw * hw * c["cout"], hw * hw * c["cout"], 0
    if ktype == "softmax":
        return c["cin"], c["cin"], 0
    if ktype == "se-mid":
        return hw * hw * c["cin"], hw * hw * c["cin"], 2 * c["cin"] * c["mid"]
    if ktype == "resize":
        return hw * hw * c["cin"], hw * hw * c["cin"] * c["scale"] ** 2, 0
    if ktype == "pad":
        return hw * hw * c["cin"], (hw + 2 * c["p"]) ** 2 * c["cin"], 0
    n = hw * hw * c.get("cin", 1)
    return (2 * n if ktype == "eltwise" else n), n, 0
