"""A deterministic backend for the kernel pipeline tests: kernels and whole ONNX models get synthetic times."""

from __future__ import annotations

from spaceevo.latency import Backend, KernelUnit, TimingStats, detect_kernels, kernel_shapes

OVERHEAD_MS = 0.05  # what a kernel timed alone pays that a network pays once


def kernel_ms(ktype: str, config: dict, macs: int) -> float:
    """Synthetic kernel time: work, traffic and a fixed per-kernel overhead."""
    _in, out, _w = kernel_shapes(ktype, config)
    return OVERHEAD_MS + macs * 2e-8 + out * 3e-7 + (0.01 if config.get("act") == "hswish" else 0.0)


class KernelFakeBackend(Backend):
    """'Times' KernelUnits by :func:`kernel_ms` and whole models by the sum of their kernels minus overheads."""

    name = "fakek"
    supports_reference = True

    def available(self) -> bool:
        return True

    def runtime_versions(self) -> dict:
        return {"fake": "1"}

    def device_facts(self) -> dict:
        return {"cpu": "fake"}

    def prepare(self, unit, dtype):
        if isinstance(unit, KernelUnit):
            return kernel_ms(unit.type, unit.config, unit.macs)
        d = detect_kernels(unit.path, "ort", dtype)
        total = sum(kernel_ms(k.type, k.config, k.unit().macs) for k in d.kernels)
        return 0.9 * (total - OVERHEAD_MS * len(d.kernels)) + 0.2

    def time_once(self, artifact) -> TimingStats:
        ms = float(artifact)
        ref = [0.5] * 4 if self.reference else None
        return TimingStats.from_times([ms, ms * 1.01, ms * 0.99], ref_times_ms=ref)


class OtherKernelFakeBackend(KernelFakeBackend):
    """Another 'device': every kernel ``0.4 * ms ** 1.1`` of :class:`KernelFakeBackend`, convolutions 30% slower
    still, a per-kernel overhead of 0.02 ms; whole models as there (sum of kernels less their overheads)."""

    name = "fakek2"

    @staticmethod
    def kernel_time(ktype: str, config: dict, macs: int) -> float:
        base = 0.4 * kernel_ms(ktype, config, macs) ** 1.1
        return base * (1.3 if ktype == "conv" else 1.0) + 0.02

    def prepare(self, unit, dtype):
        if isinstance(unit, KernelUnit):
            return self.kernel_time(unit.type, unit.config, unit.macs)
        d = detect_kernels(unit.path, "ort", dtype)
        total = sum(self.kernel_time(k.type, k.config, k.unit().macs) - 0.02 for k in d.kernels)
        return 0.8 * total + 0.1
