"""Whole-model builders: one block, or a whole subnet with its fixed stages, to ONNX or Keras."""

from __future__ import annotations

from ._blocks import BlockConfig
from ._encoding import SearchSpace, Subnet
from ._keras_builder import ops_to_keras
from ._onnx_builder import ops_to_onnx


def block_to_onnx(cfg: BlockConfig, seed: int = 0):
    """An ONNX model of one block at its config (deterministic weights from ``seed``).

    Parameters
    ----------
    cfg : BlockConfig
    seed : int
        Seed of the random weights.

    Returns
    -------
    onnx.ModelProto
        FP32, opset ``OPSET``, BatchNorm folded, checked by ``onnx.checker``.
    """
    return ops_to_onnx(cfg.ops, cfg.cin, cfg.hw, seed, cfg.type, flat_input=cfg.type == "LogitsBlock")


def block_to_keras(cfg: BlockConfig, seed: int = 0):
    """A Keras model of one block at its config.

    Parameters
    ----------
    cfg : BlockConfig
    seed : int
        Seed of the weight initialisers.

    Returns
    -------
    keras.Model
        NHWC input, batch 1.

    Raises
    ------
    ImportError
        TensorFlow is not installed (the ``tflite`` extra).
    """
    return ops_to_keras(cfg.ops, cfg.cin, cfg.hw, seed, cfg.type, flat_input=cfg.type == "LogitsBlock")


def _subnet_ops(space: SearchSpace, subnet: Subnet) -> tuple:
    return tuple(op for block in space.blocks(subnet) for op in block.config.ops)


def subnet_to_onnx(space: SearchSpace, subnet: Subnet, seed: int = 0):
    """An ONNX model of a whole subnet, fixed stages and classifier included.

    Parameters
    ----------
    space : SearchSpace
    subnet : Subnet
        A valid subnet of ``space``.
    seed : int

    Returns
    -------
    onnx.ModelProto
    """
    return ops_to_onnx(_subnet_ops(space, subnet), space.hyperspace.in_channels, subnet.resolution, seed,
                       "subnet")


def subnet_to_keras(space: SearchSpace, subnet: Subnet, seed: int = 0):
    """A Keras model of a whole subnet, fixed stages and classifier included.

    Parameters
    ----------
    space : SearchSpace
    subnet : Subnet
    seed : int

    Returns
    -------
    keras.Model

    Raises
    ------
    ImportError
        TensorFlow is not installed (the ``tflite`` extra).
    """
    return ops_to_keras(_subnet_ops(space, subnet), space.hyperspace.in_channels, subnet.resolution, seed,
                        "subnet")
