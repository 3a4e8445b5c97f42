"""Build Keras models from the layer IR (for TFLite conversion); TensorFlow is imported lazily."""

from __future__ import annotations

from typing import Sequence

from ._ops import SE, Conv, GlobalAvgPool, Linear, Op, Residual


def import_keras():
    """``tf.keras`` (TensorFlow imported on first use).

    Returns
    -------
    module
        The ``keras`` module of TensorFlow.

    Raises
    ------
    ImportError
        TensorFlow is not installed (the ``tflite`` extra).
    """
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("the Keras builder needs TensorFlow: pip install 'spaceevo[tflite]'") from exc
    return tf.keras


def keras_act(keras, x, act: str | None):
    """Apply activation ``act`` (one of ``ACTIVATIONS``, or None for none) to the Keras tensor ``x``.

    Parameters
    ----------
    keras : module
        ``tf.keras`` (see ``import_keras``).
    x : keras tensor
    act : str or None

    Returns
    -------
    keras tensor

    Raises
    ------
    ValueError
        Unknown activation.
    """
    L = keras.layers
    if act is None:
        return x
    if act == "relu":
        return L.ReLU()(x)
    if act == "relu6":
        return L.ReLU(max_value=6.0)(x)
    if act == "hswish":
        return L.Activation("hard_swish")(x) if hasattr(keras.activations, "hard_swish") else \
            L.Multiply()([x, L.ReLU(max_value=6.0)(x + 3.0) / 6.0])
    if act == "hsigmoid":
        return L.ReLU(max_value=6.0)(x + 3.0) / 6.0
    if act == "sigmoid":
        return L.Activation("sigmoid")(x)
    if act == "swish":
        return L.Activation("swish")(x)
    raise ValueError(f"unknown activation {act!r}")


def keras_conv(keras, x, op: Conv, seed: int):
    """Apply the convolution ``op`` (BatchNorm folded into its bias) and its activation to ``x``.

    Parameters
    ----------
    keras : module
        ``tf.keras``.
    x : keras tensor
        NHWC input.
    op : Conv
    seed : int
        Seed of the kernel initialiser.

    Returns
    -------
    keras tensor

    Raises
    ------
    ValueError
        A grouped convolution that is neither plain nor depthwise.
    """
    L = keras.layers
    init = keras.initializers.HeNormal(seed=seed)
    use_bias = op.bn or op.bias  # BatchNorm folded into the bias, as in a deployed model
    if op.groups == 1:
        y = L.Conv2D(op.cout, op.k, op.stride, padding="same", use_bias=use_bias, kernel_initializer=init)(x)
    elif op.groups == op.cin == op.cout:
        y = L.DepthwiseConv2D(op.k, op.stride, padding="same", use_bias=use_bias, depthwise_initializer=init)(x)
    else:
        raise ValueError(f"grouped conv with groups={op.groups} is not supported by the Keras builder")
    return keras_act(keras, y, op.act)


def keras_ops(keras, x, ops: Sequence[Op], seed: int):
    """Apply the IR ops ``ops`` to the Keras tensor ``x`` (weights seeded from ``seed``).

    Parameters
    ----------
    keras : module
        ``tf.keras``.
    x : keras tensor
    ops : sequence of Op
    seed : int

    Returns
    -------
    keras tensor

    Raises
    ------
    TypeError
        An op the builder does not know.
    """
    L = keras.layers
    for i, op in enumerate(ops):
        s = seed * 1000 + i
        if isinstance(op, Conv):
            x = keras_conv(keras, x, op, s)
        elif isinstance(op, SE):
            g = L.GlobalAveragePooling2D(keepdims=True)(x)
            g = keras_conv(keras, g, Conv(op.channels, op.mid, 1, act="relu", bn=False, bias=True), s)
            g = keras_conv(keras, g, Conv(op.mid, op.channels, 1, act="hsigmoid", bn=False, bias=True), s + 1)
            x = L.Multiply()([x, g])
        elif isinstance(op, Residual):
            body = keras_ops(keras, x, op.body, s + 7)
            short = keras_ops(keras, x, op.shortcut, s + 13)
            x = keras_act(keras, L.Add()([body, short]), op.act)
        elif isinstance(op, GlobalAvgPool):
            x = L.GlobalAveragePooling2D(keepdims=True)(x)
        elif isinstance(op, Linear):
            x = L.Flatten()(x) if len(x.shape) > 2 else x
            x = L.Dense(op.cout, kernel_initializer=keras.initializers.GlorotUniform(seed=s))(x)
        else:
            raise TypeError(f"unknown op {op!r}")
    return x


def ops_to_keras(ops: Sequence[Op], cin: int, hw: int, seed: int = 0, name: str = "spaceevo",
                 flat_input: bool = False):
    """A ``keras.Model`` (NHWC input, batch 1) computing ``ops``."""
    keras = import_keras()
    shape = (cin,) if flat_input else (hw, hw, cin)
    inp = keras.Input(shape=shape, batch_size=1, name="input")
    out = keras_ops(keras, inp, ops, seed)
    return keras.Model(inp, out, name=name)
