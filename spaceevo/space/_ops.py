"""A tiny layer IR: every block is a tuple of ops, from which shapes, MACs, params and builders follow.

Describing a block once as data keeps the MAC count, the parameter count, the ONNX graph and the
Keras model in agreement by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, Union

ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "hswish", "swish", "hsigmoid", "sigmoid")


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution followed by BatchNorm (folded at export) and an optional activation."""

    cin: int
    cout: int
    k: int
    stride: int = 1
    groups: int = 1
    act: str | None = None
    bn: bool = True
    bias: bool = False


@dataclass(frozen=True)
class SE:
    """Squeeze-and-Excitation: GAP -> 1x1 (ReLU) -> 1x1 (hard-sigmoid) -> channel-wise scale."""

    channels: int
    mid: int


@dataclass(frozen=True)
class Residual:
    """``act(body(x) + shortcut(x))``; an empty shortcut is the identity."""

    body: tuple["Op", ...]
    shortcut: tuple["Op", ...] = ()
    act: str | None = None


@dataclass(frozen=True)
class GlobalAvgPool:
    """Global average pooling to 1x1, keeping the channel axis."""


@dataclass(frozen=True)
class Linear:
    """A fully connected layer with bias on a flattened input."""

    cin: int
    cout: int


Op = Union[Conv, SE, Residual, GlobalAvgPool, Linear]


def conv_out_hw(hw: int, k: int, stride: int) -> int:
    """Output side of a conv with padding (k-1)//2, as PyTorch and TF 'same' both give for odd k.

    Parameters
    ----------
    hw : int
        Input side.
    k : int
        Kernel size.
    stride : int

    Returns
    -------
    int
    """
    pad = (k - 1) // 2
    return (hw + 2 * pad - k) // stride + 1


@dataclass(frozen=True)
class Shape:
    """An activation shape in NCHW order, batch 1; ``flat`` after a Linear layer."""

    c: int
    hw: int
    flat: bool = False


def walk(ops: tuple[Op, ...], shape: Shape) -> Iterator[tuple[Op, Shape, Shape]]:
    """Yield (op, input shape, output shape) for every leaf op, descending into residuals.

    Parameters
    ----------
    ops : tuple of Op
    shape : Shape
        The input shape.

    Returns
    -------
    iterator of (Op, Shape, Shape)
    """
    for op in ops:
        if isinstance(op, Residual):
            out = shape
            for item in walk(op.body, shape):
                out = item[2]
                yield item
            for item in walk(op.shortcut, shape):
                yield item
            shape = out
            continue
        out = _out_shape(op, shape)
        yield op, shape, out
        shape = out


def _out_shape(op: Op, shape: Shape) -> Shape:
    if isinstance(op, Conv):
        return Shape(op.cout, conv_out_hw(shape.hw, op.k, op.stride))
    if isinstance(op, SE):
        return shape
    if isinstance(op, GlobalAvgPool):
        return Shape(shape.c, 1)
    if isinstance(op, Linear):
        return Shape(op.cout, 1, flat=True)
    raise TypeError(f"unknown op {op!r}")


def output_shape(ops: tuple[Op, ...], shape: Shape) -> Shape:
    """Shape after running ``ops`` on ``shape``."""
    for op in ops:
        if isinstance(op, Residual):
            shape = output_shape(op.body, shape)
        else:
            shape = _out_shape(op, shape)
    return shape


def count_macs(ops: tuple[Op, ...], shape: Shape) -> int:
    """Multiply-accumulates of conv and linear layers (the SpaceEvo tables' FLOPs convention)."""
    total = 0
    for op, _inp, out in walk(ops, shape):
        if isinstance(op, Conv):
            total += out.hw * out.hw * op.cout * (op.cin // op.groups) * op.k * op.k
        elif isinstance(op, SE):
            total += 2 * op.channels * op.mid
        elif isinstance(op, Linear):
            total += op.cin * op.cout
    return total


def leaves(ops: Sequence[Op]) -> Iterator[Op]:
    """The layers of ``ops`` in order, residual bodies before their shortcuts, without the Residual wrappers.

    Parameters
    ----------
    ops : sequence of Op

    Returns
    -------
    iterator of Op
    """
    for op in ops:
        if isinstance(op, Residual):
            yield from leaves(op.body)
            yield from leaves(op.shortcut)
        else:
            yield op


def count_params(ops: tuple[Op, ...]) -> int:
    """Trainable parameters as in the PyTorch model: conv weights, BN affine, SE/linear biases."""
    total = 0
    for op, _inp, _out in walk(ops, Shape(1, 1)):
        if isinstance(op, Conv):
            total += op.cout * (op.cin // op.groups) * op.k * op.k
            total += 2 * op.cout if op.bn else 0
            total += op.cout if op.bias else 0
        elif isinstance(op, SE):
            total += 2 * op.channels * op.mid + op.mid + op.channels
        elif isinstance(op, Linear):
            total += op.cin * op.cout + op.cout
    return total
