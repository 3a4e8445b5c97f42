"""Downstream SpaceEvo stage: quantised weight-sharing supernet training and subnet extraction."""

from ._data import BUILTIN_DATASETS, DataSplits, ImageFolder, load_dataset
from ._export import export_onnx, latency_report
from ._layers import DynamicBlock, StaticBlock, leaf_roles
from ._quant import LsqActQuantizer, LsqWeightQuantizer
from ._supernet import StaticSubnet, Supernet, subnet_blocks
from ._train import TrainConfig, calibrate_quantizers, evaluate, load_supernet, recalibrate_bn, train_supernet

__all__ = [
    "BUILTIN_DATASETS", "DataSplits", "DynamicBlock", "ImageFolder", "LsqActQuantizer", "LsqWeightQuantizer",
    "StaticBlock", "StaticSubnet", "Supernet", "TrainConfig", "calibrate_quantizers", "evaluate", "export_onnx",
    "latency_report", "leaf_roles", "load_dataset", "load_supernet", "recalibrate_bn", "subnet_blocks",
    "train_supernet",
]
