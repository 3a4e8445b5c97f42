"""Search-space model of SpaceEvo: block types, hyperspaces, search spaces and subnets.

Also the layer IR (``Conv``, ``SE``, ``Residual``, ``GlobalAvgPool``, ``Linear``) and its ONNX and Keras
builders, which the collector's kernels and the supernet's dynamic layers reuse.
"""

from ._blocks import BlockConfig, BlockType, get_block, list_blocks, make_divisible, register_block
from ._encoding import SearchSpace, StageBlock, Subnet, as_search_space, subnets_macs
from ._hyperspace import (
    SEARCHABLE_STAGES,
    BlockChoice,
    Hyperspace,
    StageSpec,
    get_hyperspace,
    list_hyperspaces,
    register_hyperspace,
)
from ._keras_builder import import_keras, keras_act, keras_conv, keras_ops
from ._models import block_to_keras, block_to_onnx, subnet_to_keras, subnet_to_onnx
from ._onnx_builder import OPSET, GraphBuilder
from ._ops import ACTIVATIONS, SE, Conv, GlobalAvgPool, Linear, Op, Residual, Shape, conv_out_hw, leaves, walk
from ._published import EXAMPLE_SPACE, EXAMPLE_SUBNET, published_subnets
from ._zoo import build_zoo_model, generate_zoo, get_zoo_family, list_zoo_families, read_zoo, zoo_seeds
from ._zoo_families import T as ZooTensor
from ._zoo_families import ZooGraph, register_zoo_family

__all__ = [
    "ACTIVATIONS", "EXAMPLE_SPACE", "EXAMPLE_SUBNET", "OPSET", "SEARCHABLE_STAGES", "SE", "BlockChoice", "BlockConfig",
    "BlockType", "Conv", "GlobalAvgPool", "GraphBuilder", "Hyperspace", "Linear", "Op", "Residual", "SearchSpace",
    "Shape", "StageBlock", "StageSpec", "Subnet", "ZooGraph", "ZooTensor", "as_search_space", "block_to_keras",
    "block_to_onnx", "build_zoo_model", "conv_out_hw", "generate_zoo", "get_block", "get_hyperspace",
    "get_zoo_family", "import_keras", "keras_act", "keras_conv", "keras_ops", "leaves", "list_blocks",
    "list_hyperspaces", "list_zoo_families", "make_divisible", "published_subnets", "read_zoo", "register_block",
    "register_hyperspace", "register_zoo_family", "subnet_to_keras", "subnet_to_onnx", "subnets_macs", "walk",
    "zoo_seeds",
]
