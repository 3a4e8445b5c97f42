"""Search-space model of SpaceEvo: block types, hyperspaces, search spaces and subnets."""

from ._blocks import BlockConfig, BlockType, get_block, list_blocks, make_divisible, register_block
from ._encoding import SearchSpace, StageBlock, Subnet, subnets_macs
from ._hyperspace import (
    SEARCHABLE_STAGES,
    BlockChoice,
    Hyperspace,
    StageSpec,
    get_hyperspace,
    list_hyperspaces,
    register_hyperspace,
)
from ._models import block_to_keras, block_to_onnx, subnet_to_keras, subnet_to_onnx
from ._ops import ACTIVATIONS, conv_out_hw
from ._ops import Conv as ConvOp
from ._onnx_builder import OPSET as ONNX_OPSET
from ._zoo_families import ZooGraph, T as ZooTensor
from ._published import EXAMPLE_SPACE, EXAMPLE_SUBNET, published_subnets
from ._zoo import build_zoo_model, generate_zoo, get_zoo_family, list_zoo_families, read_zoo, zoo_seeds
from ._zoo_families import register_zoo_family

__all__ = [
    "ACTIVATIONS", "EXAMPLE_SPACE", "EXAMPLE_SUBNET", "SEARCHABLE_STAGES", "BlockChoice", "BlockConfig",
    "BlockType", "Hyperspace", "SearchSpace", "StageBlock", "StageSpec", "Subnet", "block_to_keras",
    "block_to_onnx", "conv_out_hw", "get_block", "get_hyperspace", "list_blocks", "list_hyperspaces",
    "make_divisible", "published_subnets", "register_block", "register_hyperspace", "subnet_to_keras",
    "subnet_to_onnx", "subnets_macs", "build_zoo_model", "generate_zoo", "get_zoo_family", "list_zoo_families",
    "read_zoo", "register_zoo_family", "zoo_seeds", "ConvOp", "ONNX_OPSET", "ZooGraph", "ZooTensor",
]
