"""Block types of the SpaceEvo hyperspaces (SPACEEVO.md section 3), registered by name.

Each block type turns a validated :class:`BlockConfig` into the layer IR of ``_ops``; shapes,
MACs, parameters and both builders are derived from that IR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from spaceevo.registry import Registry

from ._ops import (
    ACTIVATIONS,
    SE,
    Conv,
    GlobalAvgPool,
    Linear,
    Op,
    Residual,
    Shape,
    count_macs,
    count_params,
    leaves,
    output_shape,
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of 8, at least 8, never more than 10% below ``v``.

    Parameters
    ----------
    v : float
    divisor : int

    Returns
    -------
    int
    """
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class BlockType:
    """A registered block type: its ops builder and what its config may hold."""

    name: str
    build: Callable[["BlockConfig"], tuple[Op, ...]]
    uses_expand: bool
    doc: str


_BLOCKS: Registry[BlockType] = Registry("block type", normalize=lambda n, names: n if n in names else f"{n}Block")


def register_block(name: str, uses_expand: bool = True) -> Callable:
    """Decorator: register a function ``cfg -> ops`` as the block type ``name``.

    Parameters
    ----------
    name : str
        Block type name, e.g. ``"MobileNetV2ResBlock"``.
    uses_expand : bool
        Whether the expand ratio ``e`` changes the block (else it is fixed to 0).

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """

    def deco(fn: Callable[["BlockConfig"], tuple[Op, ...]]) -> Callable:
        _BLOCKS.register(name, BlockType(name, fn, uses_expand, (fn.__doc__ or "").strip()))
        return fn

    return deco


def list_blocks(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered block types, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns (e.g. ``"MobileNet*"``); only matching names are listed.

    Returns
    -------
    list of str
    """
    return _BLOCKS.names(filter)


def get_block(name: str) -> BlockType:
    """The block type called ``name``; ``MobileNetV2Res`` and ``MobileNetV2ResBlock`` both work.

    Parameters
    ----------
    name : str

    Returns
    -------
    BlockType

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid block types.
    """
    return _BLOCKS.get(name)


@dataclass(frozen=True)
class BlockConfig:
    """One concrete block: type, input side ``hw``, channels, kernel, expand ratio, stride, act."""

    type: str
    hw: int
    cin: int
    cout: int
    k: int = 3
    e: float = 0.0
    stride: int = 1
    act: str = "relu"
    _ops: tuple = field(default=(), init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        btype = get_block(self.type)
        object.__setattr__(self, "type", btype.name)
        for name in ("hw", "cin", "cout"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.type == "LogitsBlock":
            if self.k not in (0, 1) or self.stride not in (0, 1):
                raise ValueError(f"k={self.k}, s={self.stride}: LogitsBlock takes k in [0, 1], s in [0, 1]")
        else:
            if not isinstance(self.k, int) or self.k < 1 or self.k % 2 == 0:
                raise ValueError(f"k={self.k!r} must be an odd positive integer (1, 3, 5, 7, ...)")
            if self.stride not in (1, 2):
                raise ValueError(f"stride={self.stride!r} is not in [1, 2]")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act={self.act!r} is not in {list(ACTIVATIONS)}")
        e = float(self.e or 0.0)
        if btype.uses_expand and e <= 0:
            raise ValueError(f"e={self.e!r}: {self.type} needs an expand ratio > 0")
        if not btype.uses_expand and e != 0:
            raise ValueError(f"e={self.e!r}: {self.type} takes no expand ratio (use 0)")
        object.__setattr__(self, "e", e)
        object.__setattr__(self, "_ops", btype.build(self))

    @property
    def ops(self) -> tuple[Op, ...]:
        """The layer IR of this block."""
        return self._ops

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW input shape (batch 1); Logits takes a flat ``(1, cin)``."""
        if self.type == "LogitsBlock":
            return (1, self.cin)
        return (1, self.cin, self.hw, self.hw)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """NCHW output shape (batch 1), or ``(1, cout)`` for Logits."""
        out = output_shape(self.ops, Shape(self.cin, self.hw, self.type == "LogitsBlock"))
        return (1, out.c) if out.flat else (1, out.c, out.hw, out.hw)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of conv and linear layers."""
        return count_macs(self.ops, Shape(self.cin, self.hw))

    @property
    def params(self) -> int:
        """Parameters as in the trainable model (conv weights + BN affine + biases)."""
        return count_params(self.ops)

    @property
    def hidden(self) -> int:
        """Width of the block's widest inner tensor (its hidden width)."""
        widths = [self.cin, self.cout]
        for op in leaves(self.ops):
            if isinstance(op, Conv):
                widths.append(op.cout)
        return max(widths)

    def as_dict(self) -> dict:
        """Plain dict of the config fields (for JSON and DataFrames)."""
        return {
            "type": self.type, "hw": self.hw, "cin": self.cin, "cout": self.cout,
            "k": self.k, "e": self.e, "stride": self.stride, "act": self.act,
        }

    def to_string(self) -> str:
        """Compact form ``MobileNetV2ResBlock hw=112 cin=16 cout=32 k=3 e=4 s=2 act=relu6``."""
        e = f"{self.e:g}"
        return (f"{self.type} hw={self.hw} cin={self.cin} cout={self.cout} k={self.k} e={e} "
                f"s={self.stride} act={self.act}")

    @classmethod
    def parse(cls, text: str) -> "BlockConfig":
        """Parse :meth:`to_string`'s form; keys may come in any order, ``s`` or ``stride``."""
        parts = text.split()
        if not parts:
            raise ValueError("empty block description; expected e.g. "
                             "'MobileNetV2ResBlock hw=112 cin=16 cout=32 k=3 e=4 s=2 act=relu6'")
        kwargs: dict = {}
        allowed = {"hw", "cin", "cout", "k", "e", "s", "stride", "act"}
        for part in parts[1:]:
            m = re.fullmatch(r"(\w+)=(\S+)", part)
            if not m or m.group(1) not in allowed:
                raise ValueError(f"bad block field {part!r}; allowed keys: {sorted(allowed)}")
            key, value = m.groups()
            key = "stride" if key == "s" else key
            try:
                kwargs[key] = value if key == "act" else (float(value) if key == "e" else int(value))
            except ValueError:
                raise ValueError(f"block field {key}={value!r} is not a number") from None
        missing = [name for name in ("hw", "cin", "cout") if name not in kwargs]
        if missing:
            raise ValueError(f"block {text!r} lacks required field(s) {missing}; expected e.g. "
                             "'MobileNetV2ResBlock hw=112 cin=16 cout=32 k=3 e=4 s=2 act=relu6'")
        return cls(parts[0], **kwargs)


def _shortcut(cin: int, cout: int, stride: int) -> tuple[Op, ...]:
    """Identity when shapes match, else a 1x1 strided conv + BN."""
    if stride == 1 and cin == cout:
        return ()
    return (Conv(cin, cout, 1, stride),)


def _dw(ch: int, k: int, stride: int, act: str | None) -> Conv:
    return Conv(ch, ch, k, stride, groups=ch, act=act)


@register_block("FirstConvBlock", uses_expand=False)
def _first_conv(c: BlockConfig) -> tuple[Op, ...]:
    """k x k conv with stride and activation: the stem."""
    return (Conv(c.cin, c.cout, c.k, c.stride, act=c.act),)


@register_block("FinalExpandBlock", uses_expand=False)
def _final_expand(c: BlockConfig) -> tuple[Op, ...]:
    """1x1 conv + activation before pooling."""
    return (Conv(c.cin, c.cout, 1, c.stride, act=c.act),)


@register_block("FeatureMixBlock", uses_expand=False)
def _feature_mix(c: BlockConfig) -> tuple[Op, ...]:
    """Global average pool, then 1x1 conv + activation (no BN, as in OFA's feature mix)."""
    return (GlobalAvgPool(), Conv(c.cin, c.cout, 1, 1, act=c.act, bn=False, bias=False))


@register_block("LogitsBlock", uses_expand=False)
def _logits(c: BlockConfig) -> tuple[Op, ...]:
    """Linear classifier."""
    return (Linear(c.cin, c.cout),)


def _inverted_residual(c: BlockConfig, se: bool, k3_stack: bool, always_residual: bool) -> tuple[Op, ...]:
    hidden = make_divisible(c.cin * c.e)
    body: list[Op] = []
    if hidden != c.cin:
        body.append(Conv(c.cin, hidden, 1, act=c.act))
    if k3_stack:
        n = (c.k - 1) // 2
        for i in range(n):
            last = i == n - 1
            body.append(Conv(hidden, hidden, 3, c.stride if i == 0 else 1, groups=hidden,
                             act=c.act if last else None, bn=last))
    else:
        body.append(_dw(hidden, c.k, c.stride, c.act))
    if se:
        body.append(SE(hidden, make_divisible(hidden / 4)))
    body.append(Conv(hidden, c.cout, 1))
    if always_residual:
        return (Residual(tuple(body), _shortcut(c.cin, c.cout, c.stride)),)
    if c.stride == 1 and c.cin == c.cout:
        return (Residual(tuple(body)),)
    return tuple(body)


@register_block("MobileNetV2Block")
def _mbv2(c: BlockConfig) -> tuple[Op, ...]:
    """Plain inverted residual: residual only when stride 1 and cin == cout."""
    return _inverted_residual(c, se=False, k3_stack=False, always_residual=False)


@register_block("MobileNetV2ResBlock")
def _mbv2_res(c: BlockConfig) -> tuple[Op, ...]:
    """Inverted residual (hidden = md(cin*e)) with an always-present residual path."""
    return _inverted_residual(c, se=False, k3_stack=False, always_residual=True)


@register_block("MobileNetV3ResBlock")
def _mbv3_res(c: BlockConfig) -> tuple[Op, ...]:
    """MobileNetV2Res plus SE on the hidden width (mid = md(hidden/4))."""
    return _inverted_residual(c, se=True, k3_stack=False, always_residual=True)


@register_block("MobileNetV2K3ResBlock")
def _mbv2_k3_res(c: BlockConfig) -> tuple[Op, ...]:
    """MobileNetV2Res whose k x k depthwise is (k-1)/2 stacked 3x3 depthwise convs."""
    return _inverted_residual(c, se=False, k3_stack=True, always_residual=True)


@register_block("MobileNetV3K3ResBlock")
def _mbv3_k3_res(c: BlockConfig) -> tuple[Op, ...]:
    """MobileNetV3Res whose k x k depthwise is (k-1)/2 stacked 3x3 depthwise convs."""
    return _inverted_residual(c, se=True, k3_stack=True, always_residual=True)


@register_block("MobileNetV1DualBlock", uses_expand=False)
def _mbv1_dual(c: BlockConfig) -> tuple[Op, ...]:
    """DW(k, s) -> PW -> DW(k) -> PW, each + BN + act; always residual; no act after the add."""
    body = (
        _dw(c.cin, c.k, c.stride, c.act),
        Conv(c.cin, c.cout, 1, act=c.act),
        _dw(c.cout, c.k, 1, c.act),
        Conv(c.cout, c.cout, 1, act=c.act),
    )
    return (Residual(body, _shortcut(c.cin, c.cout, c.stride)),)


def _bottleneck(c: BlockConfig, se: bool) -> tuple[Op, ...]:
    hidden = make_divisible(c.cout * c.e)
    body: list[Op] = [Conv(c.cin, hidden, 1, act=c.act), Conv(hidden, hidden, c.k, c.stride, act=c.act)]
    if se:
        body.append(SE(hidden, make_divisible(c.cin / 4)))
    body.append(Conv(hidden, c.cout, 1))
    return (Residual(tuple(body), _shortcut(c.cin, c.cout, c.stride), act=c.act),)


@register_block("ResNetBlock")
def _resnet(c: BlockConfig) -> tuple[Op, ...]:
    """Bottleneck (hidden = md(cout*e)); downsample when needed; activation after the add."""
    return _bottleneck(c, se=False)


@register_block("ResNetSEBlock")
def _resnet_se(c: BlockConfig) -> tuple[Op, ...]:
    """ResNet bottleneck with SE on the hidden width (mid = md(cin/4))."""
    return _bottleneck(c, se=True)


def _fused(c: BlockConfig, se: bool) -> tuple[Op, ...]:
    hidden = make_divisible(c.cin * c.e)
    body: list[Op] = [Conv(c.cin, hidden, c.k, c.stride, act=c.act)]
    if se:
        body.append(SE(hidden, make_divisible(c.cin / 4)))
    body.append(Conv(hidden, c.cout, 1))
    return (Residual(tuple(body), _shortcut(c.cin, c.cout, c.stride)),)


@register_block("FusedMBConvResBlock")
def _fused_res(c: BlockConfig) -> tuple[Op, ...]:
    """Fused MBConv: k x k conv cin->hidden (stride, act) -> 1x1 to cout; always residual."""
    return _fused(c, se=False)


@register_block("FusedMBConvSEResBlock")
def _fused_se_res(c: BlockConfig) -> tuple[Op, ...]:
    """Fused MBConv with SE (mid = md(cin/4)) after the k x k conv."""
    return _fused(c, se=True)
