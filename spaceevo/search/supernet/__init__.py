"""Downstream SpaceEvo stage: quantised weight-sharing supernet training and subnet extraction."""

from ._data import BUILTIN_DATASETS, DataSplits, ImageFolder, load_dataset
from ._distill import DistillConfig, distill_checkpoint, distill_tables, table_keys
from ._export import export_onnx, extract_subnet, latency_report, measure_latency_ms, onnx_accuracy, quantize_int8
from ._layers import DynamicBlock, StaticBlock, leaf_roles
from ._quant import LsqActQuantizer, LsqWeightQuantizer
from ._supernet import StaticSubnet, Supernet, subnet_blocks
from ._train import TrainConfig, calibrate_quantizers, evaluate, load_supernet, recalibrate_bn, train_supernet

__all__ = [
    "BUILTIN_DATASETS", "DataSplits", "DistillConfig", "DynamicBlock", "ImageFolder", "LsqActQuantizer",
    "LsqWeightQuantizer", "StaticBlock", "StaticSubnet", "Supernet", "TrainConfig", "calibrate_quantizers",
    "distill_checkpoint", "distill_tables", "evaluate", "export_onnx", "extract_subnet", "latency_report",
    "leaf_roles", "load_dataset", "load_supernet", "measure_latency_ms", "onnx_accuracy", "quantize_int8",
    "recalibrate_bn", "subnet_blocks", "table_keys", "train_supernet",
]
