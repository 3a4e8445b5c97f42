"""INT8 latency collector: units, backends (ort, tflite, adb), timing protocol, samplers and profiling runs.

Names are imported on first use (PEP 562): ``import spaceevo.latency`` (e.g. for the protocol's defaults in
``_protocol``) loads no numerical library.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._protocol import DTYPES, MODEL_ROUNDS, ROUND_REPEATS, ROUND_WARMUP, ROUNDS

# name -> private module that defines it; loaded on first access
_LAZY = {
    **dict.fromkeys(("CLOCKS", "REFERENCE_BLOCK", "Backend", "backend_options", "check_dtype", "create_backend",
                     "get_backend", "list_backends", "register_backend"), "._backend"),
    **dict.fromkeys(("AdbBackend", "AdbError"), "._adb"),
    **dict.fromkeys(("check_address", "import_ray"), "._farm_cluster"),
    **dict.fromkeys(("cpu_isa_features", "cpu_slug", "fingerprint_id", "host_facts", "parse_cpuinfo"),
                    "._fingerprint"),
    **dict.fromkeys(("CALIBRATE_METHODS", "QUANT_FORMATS", "QUANT_TYPES", "BatchCalibrationReader",
                     "RandomCalibrationReader", "input_feeds", "quantize_onnx_int8"), "._quantize"),
    "TimingStats": "._stats",
    **dict.fromkeys(("CpuSnapshot", "busy_warning", "cpu_snapshot", "machine_load", "other_load"), "._load"),
    **dict.fromkeys(("BlockUnit", "KernelUnit", "SubnetUnit", "Unit", "get_kernel", "list_kernels", "make_kernel",
                     "make_unit", "register_kernel"), "._units"),
    **dict.fromkeys(("default_device", "run_profile"), "._profile"),
    **dict.fromkeys(("fixed_block_configs", "get_sampler", "list_samplers", "plan_units", "random_subnets",
                     "register_sampler", "space_block_configs", "subnet_profile_units", "subnet_units"),
                    "._samplers"),
    **dict.fromkeys(("DEFAULT_RULES", "DetectedModel", "Kernel", "ModelInputError", "check_rules", "default_rules",
                     "detect_kernels", "executed_graph", "get_fusion_rules", "kernel_type_counts", "list_fusion_rules",
                     "load_onnx", "model_macs", "register_fusion_rules"), "._detect"),
    **dict.fromkeys(("MODEL_KERNELS", "VOCAB_OF_KERNELS", "field_choices", "kernel_shapes"), "._kernel_types"),
    **dict.fromkeys(("DEFAULT_PAIRS", "fusion_pair_units", "fusion_rules_from_times", "graph_float_ops",
                     "measure_fusion_rules"), "._fusion"),
    **dict.fromkeys(("OnnxModelUnit", "file_digest", "model_entries", "model_profile_units"), "._model_units"),
    "run_farm": "._farm",  # Ray itself is imported only when a farm runs
    **dict.fromkeys(("DeviceSpec", "load_pool", "local_pool"), "._pool"),
}

__all__ = sorted({*_LAZY, "DTYPES", "MODEL_ROUNDS", "ROUNDS", "ROUND_REPEATS", "ROUND_WARMUP"})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
