"""The architecture families of the model zoo: random variants of 14 classic CNNs, as ONNX graphs.

Each family is a function ``(rng, resolution, tiny) -> (ZooGraph, output tensor, config)`` that draws
widths, depths, kernel sizes and expand ratios from ``rng`` and builds the network with
:class:`ZooGraph` (``onnx.helper`` under the hood, BatchNorm folded, seeded weights). The graph counts
its own multiply-accumulates as it is built (conv and fully connected layers, the SpaceEvo convention),
independently of any ONNX analysis, so the kernel detector can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from spaceevo.registry import Registry

from ._onnx_builder import GraphBuilder
from ._ops import Conv


@dataclass(frozen=True)
class T:
    """A tensor of the graph being built: its name, channels and (square) spatial size."""

    name: str
    c: int
    hw: int


def _out_hw(hw: int, k: int, s: int, p: int) -> int:
    return (hw + 2 * p - k) // s + 1


class ZooGraph(GraphBuilder):
    """A graph builder with shape tracking and a running MAC count (conv + fully connected layers).

    Parameters
    ----------
    seed : int
        Seed of the graph's random weights.
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.macs = 0

    def cv(self, x: T, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: str | None = "relu") -> T:
        """Convolution (BatchNorm folded) + activation; padding (k-1)//2."""
        y = self.conv(x.name, Conv(x.c, cout, k, s, groups=groups, act=act))
        hw = _out_hw(x.hw, k, s, (k - 1) // 2)
        self.macs += hw * hw * cout * (x.c // groups) * k * k
        return T(y, cout, hw)

    def pool(self, x: T, op: str = "MaxPool", k: int = 3, s: int = 2, pad: bool = True) -> T:
        """Max or average pooling (padding (k-1)//2 unless ``pad`` is False)."""
        p = (k - 1) // 2 if pad else 0
        attrs = {"count_include_pad": 0} if op == "AveragePool" else {}
        y = self.node(op, [x.name], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, **attrs)
        return T(y, x.c, _out_hw(x.hw, k, s, p))

    def gap(self, x: T) -> T:
        """Global average pooling."""
        return T(self.node("GlobalAveragePool", [x.name]), x.c, 1)

    def fc(self, x: T, cout: int, act: str | None = None, flatten: bool = True) -> T:
        """Flatten (of an NCHW input) + Gemm with bias + activation."""
        name = self.node("Flatten", [x.name], axis=1) if flatten else x.name
        cin = x.c * x.hw * x.hw
        w = self.rng.normal(0.0, np.sqrt(1.0 / cin), (cout, cin))
        y = self.node("Gemm", [name, self.const("fc_w", w), self.const("fc_b", self.rng.normal(0, 0.01, cout))],
                      transB=1)
        self.macs += cin * cout
        return T(self.act(y, act), cout, 1)

    def add(self, a: T, b: T, act: str | None = None) -> T:
        """Residual join ``act(a + b)``."""
        return T(self.act(self.node("Add", [a.name, b.name]), act), a.c, a.hw)

    def cat(self, xs: list[T]) -> T:
        """Channel concatenation."""
        return T(self.node("Concat", [x.name for x in xs], axis=1), sum(x.c for x in xs), xs[0].hw)

    def se(self, x: T, mid: int, act: str = "relu", gate: str = "hsigmoid") -> T:
        """Squeeze-and-Excitation: GAP -> 1x1 act -> 1x1 gate -> scale."""
        s = self.gap(x)
        s = self.cv(s, mid, act=act)
        s = self.cv(s, x.c, act=gate)
        return T(self.node("Mul", [x.name, s.name]), x.c, x.hw)

    def split(self, x: T, parts: list[int]) -> list[T]:
        """Channel split into ``parts``."""
        outs = [self.name("split") for _ in parts]
        self.nodes.append(self.helper.make_node("Split", [x.name, self.shape_const(parts)], outs, name=outs[0],
                                                axis=1))
        return [T(o, c, x.hw) for o, c in zip(outs, parts)]

    def shape_const(self, values: list[int]) -> str:
        """An int64 initializer (shapes, split sizes)."""
        name = self.name("shape")
        self.inits.append(self.numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def shuffle(self, x: T, groups: int = 2) -> T:
        """Channel shuffle: Reshape -> Transpose -> Reshape."""
        y = self.node("Reshape", [x.name, self.shape_const([1, groups, x.c // groups, x.hw, x.hw])])
        y = self.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        y = self.node("Reshape", [y, self.shape_const([1, x.c, x.hw, x.hw])])
        return T(y, x.c, x.hw)


def _md(v: float, d: int = 8) -> int:
    """Round a width to a multiple of ``d`` (at least ``d``), as MobileNet's ``make_divisible``."""
    return max(d, int(v + d / 2) // d * d)


Family = Callable[[np.random.Generator, int, bool], tuple[ZooGraph, T, dict]]
FAMILIES: Registry[Family] = Registry("zoo family", plural="zoo families",
                                     error="unknown zoo family {name!r}; valid families: {choices} (or 'all')")


def register_zoo_family(name: str) -> Callable[[Family], Family]:
    """Decorator: register a zoo family builder ``(rng, resolution, tiny) -> (graph, output, config)`` as ``name``.

    Parameters
    ----------
    name : str
        The family's name (``list_zoo_families``).

    Returns
    -------
    callable
        The decorator; it returns the builder unchanged.
    """

    def deco(fn: Family) -> Family:
        return FAMILIES.register(name, fn)

    return deco


def _start(rng: np.random.Generator, res: int) -> tuple[ZooGraph, T]:
    return ZooGraph(int(rng.integers(2**31))), T("input", 3, res)


def _w(rng: np.random.Generator, tiny: bool, lo: float = 0.5, hi: float = 1.25) -> float:
    """A width multiplier (tiny models: an eighth of it)."""
    return float(rng.uniform(lo, hi)) / (8 if tiny else 1)


def _d(rng: np.random.Generator, tiny: bool, lo: int, hi: int) -> int:
    return 1 if tiny else int(rng.integers(lo, hi + 1))


@register_zoo_family("alexnet")
def alexnet(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny)
    k1 = int(rng.choice([7, 11]))
    widths = [_md(c * w) for c in (64, 192, 384, 256, 256)]
    x = g.pool(g.cv(x, widths[0], k1, 4), k=3, s=2)
    x = g.pool(g.cv(x, widths[1], int(rng.choice([3, 5]))), k=3, s=2)
    for c in widths[2:]:
        x = g.cv(x, c, 3)
    x = g.pool(x, k=3, s=2)
    hidden = _md(int(rng.choice([1024, 2048])) * w)
    x = g.fc(g.fc(x, hidden, "relu"), hidden, "relu", flatten=False)
    return g, g.fc(x, 1000, flatten=False), {"width": w, "k1": k1, "widths": widths, "hidden": hidden}


@register_zoo_family("vgg")
def vgg(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny, 0.25, 0.6)
    depths = [_d(rng, tiny, 1, 2), _d(rng, tiny, 1, 2), _d(rng, tiny, 2, 4), _d(rng, tiny, 2, 4), _d(rng, tiny, 2, 4)]
    widths = [_md(c * w) for c in (64, 128, 256, 512, 512)]
    for n, c in zip(depths, widths):
        for _ in range(n):
            x = g.cv(x, c, 3)
        x = g.pool(x, k=2, s=2, pad=False)
    hidden = _md(1024 * w)
    x = g.fc(g.gap(x), hidden, "relu")
    return g, g.fc(x, 1000, flatten=False), {"width": w, "depths": depths, "widths": widths}


@register_zoo_family("resnet")
def resnet(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny, 0.35, 1.0)
    bottleneck = bool(rng.integers(2))
    depths = [_d(rng, tiny, 1, 3), _d(rng, tiny, 1, 4), _d(rng, tiny, 1, 6), _d(rng, tiny, 1, 3)]
    widths = [_md(c * w) for c in (64, 128, 256, 512)]
    x = g.pool(g.cv(x, _md(64 * w), 7, 2), k=3, s=2)
    for i, (n, c) in enumerate(zip(depths, widths)):
        for j in range(n):
            s = 2 if i > 0 and j == 0 else 1
            cout = c * 4 if bottleneck else c
            if bottleneck:
                y = g.cv(g.cv(g.cv(x, c, 1), c, 3, s), cout, 1, act=None)
            else:
                y = g.cv(g.cv(x, c, 3, s), cout, 3, act=None)
            short = x if (s == 1 and x.c == cout) else g.cv(x, cout, 1, s, act=None)
            x = g.add(y, short, "relu")
    return g, g.fc(g.gap(x), 1000), {"width": w, "bottleneck": bottleneck, "depths": depths, "widths": widths}


@register_zoo_family("densenet")
def densenet(rng, res, tiny):
    g, x = _start(rng, res)
    growth = max(4, int(rng.choice([12, 24, 32])) // (8 if tiny else 1))
    depths = [_d(rng, tiny, 2, 6), _d(rng, tiny, 2, 8), _d(rng, tiny, 2, 8), _d(rng, tiny, 2, 6)]
    x = g.pool(g.cv(x, 2 * growth, 7, 2), k=3, s=2)
    for i, n in enumerate(depths):
        for _ in range(n):
            y = g.cv(g.cv(x, 4 * growth, 1), growth, 3)
            x = g.cat([x, y])
        if i < len(depths) - 1:
            x = g.pool(g.cv(x, _md(x.c // 2, 4), 1), "AveragePool", k=2, s=2, pad=False)
    return g, g.fc(g.gap(x), 1000), {"growth": growth, "depths": depths}


@register_zoo_family("squeezenet")
def squeezenet(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny)
    n_fire = 2 if tiny else int(rng.integers(4, 9))
    x = g.pool(g.cv(x, _md(64 * w), 3, 2), k=3, s=2)
    squeezes = []
    for i in range(n_fire):
        sq = _md((16 + 16 * (i // 2)) * w)
        squeezes.append(sq)
        s = g.cv(x, sq, 1)
        x = g.cat([g.cv(s, 4 * sq, 1), g.cv(s, 4 * sq, 3)])
        if i in (1, 3):
            x = g.pool(x, k=3, s=2)
    x = g.cv(x, 1000, 1)
    return g, T(g.node("Flatten", [g.gap(x).name], axis=1), 1000, 1), {"width": w, "squeezes": squeezes}


@register_zoo_family("googlenet")
def googlenet(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny)
    x = g.pool(g.cv(x, _md(64 * w), 7, 2), k=3, s=2)
    x = g.pool(g.cv(g.cv(x, _md(64 * w), 1), _md(192 * w), 3), k=3, s=2)
    n_mod = [_d(rng, tiny, 1, 2), _d(rng, tiny, 2, 5), _d(rng, tiny, 1, 2)]
    k_big = int(rng.choice([3, 5]))
    for i, n in enumerate(n_mod):
        for _ in range(n):
            c = _md(float(rng.uniform(32, 128)) * w * (1 + i))
            b1 = g.cv(x, c, 1)
            b2 = g.cv(g.cv(x, c, 1), _md(1.5 * c), 3)
            b3 = g.cv(g.cv(x, _md(c / 4), 1), _md(c / 2), k_big)
            b4 = g.cv(g.pool(x, k=3, s=1), _md(c / 2), 1)
            x = g.cat([b1, b2, b3, b4])
        if i < 2:
            x = g.pool(x, k=3, s=2)
    return g, g.fc(g.gap(x), 1000), {"width": w, "modules": n_mod, "k_big": k_big}


def _mbconv(g: ZooGraph, x: T, cout: int, k: int, s: int, e: float, act: str, se: float = 0.0,
            se_act: str = "relu", gate: str = "hsigmoid") -> T:
    """Inverted residual: 1x1 expand, k x k depthwise, optional SE, 1x1 project, residual when shapes match."""
    hid = _md(x.c * e) if e != 1 else x.c
    y = g.cv(x, hid, 1, act=act) if e != 1 else x
    y = g.cv(y, hid, k, s, groups=hid, act=act)
    if se:
        y = g.se(y, _md(hid * se), se_act, gate)
    y = g.cv(y, cout, 1, act=None)
    return g.add(y, x) if s == 1 and x.c == cout else y


def _mobile_net(rng, res, tiny, stages, act_of, se_of, k_choices, e_choices, head: int, gate: str, se_act: str,
                stem: int = 32):
    g, x = _start(rng, res)
    w = _w(rng, tiny, 0.35, 1.4)
    x = g.cv(x, _md(stem * w), 3, 2, act=act_of(0))
    cfg = []
    for i, (c, n, s) in enumerate(stages):
        for j in range(_d(rng, tiny, max(1, n - 1), n + 1)):
            k, e = int(rng.choice(k_choices)), float(rng.choice(e_choices))
            cfg.append([i, k, e])
            x = _mbconv(g, x, _md(c * w), k, s if j == 0 else 1, e, act_of(i), se_of(i), se_act, gate)
    x = g.cv(x, _md(head * max(w, 1.0) / (8 if tiny else 1)), 1, act=act_of(len(stages)))
    return g, g.fc(g.gap(x), 1000), {"width": w, "blocks": cfg}


_V2 = [(16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]


@register_zoo_family("mobilenetv1")
def mobilenetv1(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny, 0.25, 1.0)
    k = int(rng.choice([3, 5]))
    x = g.cv(x, _md(32 * w), 3, 2)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * _d(rng, tiny, 1, 5) + \
        [(1024, 2), (1024, 1)]
    for c, s in plan:
        x = g.cv(g.cv(x, x.c, k, s, groups=x.c), _md(c * w), 1)
    return g, g.fc(g.gap(x), 1000), {"width": w, "k": k, "plan": plan}


@register_zoo_family("mobilenetv2")
def mobilenetv2(rng, res, tiny):
    return _mobile_net(rng, res, tiny, _V2, lambda i: "relu6", lambda i: 0.0, [3, 5], [3, 4, 6], 1280, "hsigmoid",
                       "relu")


@register_zoo_family("mobilenetv3")
def mobilenetv3(rng, res, tiny):
    stages = [(16, 1, 1), (24, 2, 2), (40, 3, 2), (80, 4, 2), (112, 2, 1), (160, 3, 2)]
    return _mobile_net(rng, res, tiny, stages, lambda i: "relu" if i < 2 else "hswish",
                       lambda i: 0.25 if i in (2, 4, 5) else 0.0, [3, 5], [3, 4, 6], 960, "hsigmoid", "relu",
                       stem=16)


@register_zoo_family("mnasnet")
def mnasnet(rng, res, tiny):
    stages = [(16, 1, 1), (24, 2, 2), (40, 3, 2), (80, 4, 2), (112, 2, 1), (160, 3, 2), (320, 1, 1)]
    return _mobile_net(rng, res, tiny, stages, lambda i: "relu", lambda i: 0.25 if i in (2, 4, 5) else 0.0,
                       [3, 5], [3, 6], 1280, "sigmoid", "relu")


@register_zoo_family("proxylessnas")
def proxylessnas(rng, res, tiny):
    stages = [(16, 1, 1), (32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)]
    return _mobile_net(rng, res, tiny, stages, lambda i: "relu6", lambda i: 0.0, [3, 5, 7], [3, 6], 1280,
                       "hsigmoid", "relu")


@register_zoo_family("efficientnet")
def efficientnet(rng, res, tiny):
    stages = [(16, 1, 1), (24, 2, 2), (40, 2, 2), (80, 3, 2), (112, 3, 1), (192, 4, 2), (320, 1, 1)]
    return _mobile_net(rng, res, tiny, stages, lambda i: "swish", lambda i: 0.25, [3, 5], [1, 4, 6], 1280,
                       "sigmoid", "swish")


@register_zoo_family("shufflenetv2")
def shufflenetv2(rng, res, tiny):
    g, x = _start(rng, res)
    w = _w(rng, tiny, 0.5, 1.5)
    k = int(rng.choice([3, 5]))
    widths = [_md(c * w, 16) for c in (116, 232, 464)]
    depths = [_d(rng, tiny, 2, 4), _d(rng, tiny, 4, 8), _d(rng, tiny, 2, 4)]
    x = g.pool(g.cv(x, 24 if not tiny else 8, 3, 2), k=3, s=2)
    for c, n in zip(widths, depths):
        half = c // 2
        b1 = g.cv(g.cv(x, x.c, k, 2, groups=x.c, act=None), half, 1)
        b2 = g.cv(g.cv(g.cv(x, half, 1), half, k, 2, groups=half, act=None), half, 1)
        x = g.shuffle(g.cat([b1, b2]))
        for _ in range(n - 1):
            a, b = g.split(x, [half, half])
            b = g.cv(g.cv(g.cv(b, half, 1), half, k, 1, groups=half, act=None), half, 1)
            x = g.shuffle(g.cat([a, b]))
    x = g.cv(x, _md(1024 * w / (8 if tiny else 1)), 1)
    return g, g.fc(g.gap(x), 1000), {"width": w, "k": k, "widths": widths, "depths": depths}


@register_zoo_family("regnet")
def regnet(rng, res, tiny):
    g, x = _start(rng, res)
    group_w = int(rng.choice([8, 16, 24])) if not tiny else 8
    se = bool(rng.integers(2))
    depths = [_d(rng, tiny, 1, 2), _d(rng, tiny, 1, 4), _d(rng, tiny, 2, 7), _d(rng, tiny, 1, 2)]
    w0 = float(rng.uniform(24, 64))
    widths = [max(group_w, int(round(w0 * 2.2 ** i / (8 if tiny else 1) / group_w)) * group_w) for i in range(4)]
    x = g.cv(x, 32 if not tiny else 8, 3, 2)
    for c, n in zip(widths, depths):
        for j in range(n):
            s = 2 if j == 0 else 1
            y = g.cv(g.cv(x, c, 1), c, 3, s, groups=c // group_w)
            if se:
                y = g.se(y, max(8, x.c // 4), "relu", "sigmoid")
            y = g.cv(y, c, 1, act=None)
            short = x if (s == 1 and x.c == c) else g.cv(x, c, 1, s, act=None)
            x = g.add(y, short, "relu")
    return g, g.fc(g.gap(x), 1000), {"group_width": group_w, "se": se, "depths": depths, "widths": widths}
