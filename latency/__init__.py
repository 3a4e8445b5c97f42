"""INT8 latency collector: units, backends (ort, tflite, adb), timing protocol, samplers and profiling runs."""

from ._backend import DTYPES, Backend, backend_class, check_dtype, get_backend, list_backends, register_backend
from ._fingerprint import cpu_isa_features, cpu_slug, fingerprint_id, host_facts, parse_cpuinfo
from ._quantize import RandomCalibrationReader, input_feeds, quantize_onnx_int8
from ._stats import TimingStats
from ._units import (
    BlockUnit,
    KernelUnit,
    SubnetUnit,
    Unit,
    get_kernel,
    list_kernels,
    make_kernel,
    make_unit,
    register_kernel,
)

__all__ = [
    "DTYPES", "Backend", "BlockUnit", "KernelUnit", "RandomCalibrationReader", "SubnetUnit", "TimingStats", "Unit",
    "backend_class", "check_dtype", "cpu_isa_features", "cpu_slug", "fingerprint_id", "get_backend", "get_kernel",
    "host_facts", "input_feeds", "list_backends", "list_kernels", "make_kernel", "make_unit", "parse_cpuinfo",
    "quantize_onnx_int8", "register_backend", "register_kernel",
]

from ._profile import ROUND_REPEATS, ROUND_WARMUP, ROUNDS, default_device, run_profile  # noqa: E402
from ._samplers import (  # noqa: E402
    fixed_block_configs,
    get_sampler,
    list_samplers,
    random_subnets,
    register_sampler,
    space_block_configs,
    subnet_units,
)

__all__ += ["ROUNDS", "ROUND_REPEATS", "ROUND_WARMUP", "default_device", "fixed_block_configs", "get_sampler",
            "list_samplers", "random_subnets", "register_sampler", "run_profile", "space_block_configs",
            "subnet_units"]

from ._farm import run_farm  # noqa: E402  (Ray is imported only when a farm runs)
from ._pool import DeviceSpec, load_pool, local_pool  # noqa: E402

__all__ += ["DeviceSpec", "load_pool", "local_pool", "run_farm"]
