"""Fusion rules measured on a device, as nn-Meter does: time op1, op2 and op1+op2 and compare.

A pair is fused when ``T1 + T2 - T12 > 0.5 * min(T1, T2)``: running the two ops as one costs clearly less
than running them apart, so the runtime merged them. The timings go through the collector
(``run_profile``: the protocol, the store), so the pairs are rows of the device's data like any kernel.
Which activations an INT8 graph runs in FP32 is read from the graph onnxruntime executes.
"""

from __future__ import annotations

from typing import Any, Sequence

from ._backend import create_backend
from ._detect import default_rules, executed_graph
from ._profile import default_device, run_profile
from ._units import KernelUnit

# (rule field, op1 kernel, activation): op1 alone, the activation alone on op1's output, and both as one kernel
DEFAULT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("conv_acts", "conv", "relu"), ("conv_acts", "conv", "relu6"), ("conv_acts", "conv", "hswish"),
    ("conv_acts", "conv", "sigmoid"), ("fc_acts", "linear", "relu"), ("add_acts", "eltwise", "relu"),
    ("add_acts", "eltwise", "relu6"),
)
FUSED_SHARE = 0.5  # nn-Meter's threshold: fused when T1 + T2 - T12 > 0.5 x min(T1, T2)


def _pair_units(op1: str, act: str, hw: int, c: int) -> tuple[KernelUnit, KernelUnit, KernelUnit]:
    if op1 == "conv":
        base = {"hw": hw, "cin": c, "cout": c, "k": 3, "stride": 1, "groups": 1}
        return (KernelUnit("conv", {**base, "act": "none"}), KernelUnit("act", {"hw": hw, "cin": c, "act": act}),
                KernelUnit("conv", {**base, "act": act}))
    if op1 == "linear":
        return (KernelUnit("linear", {"cin": c * 4, "cout": c * 4, "act": "none"}),
                KernelUnit("act", {"hw": 1, "cin": c * 4, "act": act}),
                KernelUnit("linear", {"cin": c * 4, "cout": c * 4, "act": act}))
    base = {"hw": hw, "cin": c, "op": "add", "shape": "same"}
    return (KernelUnit("eltwise", {**base, "act": "none"}), KernelUnit("act", {"hw": hw, "cin": c, "act": act}),
            KernelUnit("eltwise", {**base, "act": act}))


def fusion_pair_units(pairs: Sequence[tuple[str, str, str]] = DEFAULT_PAIRS, hw: int = 28, channels: int = 64) -> list:
    """The distinct kernel units the pairs need (op1, op2 and op1+op2 of each).

    Parameters
    ----------
    pairs : sequence of (rule field, op1 kernel type, activation)
    hw : int
        Spatial side of the kernels.
    channels : int

    Returns
    -------
    list of KernelUnit
    """
    seen: dict[str, KernelUnit] = {}
    for _field, op1, act in pairs:
        for u in _pair_units(op1, act, hw, channels):
            seen.setdefault(u.key, u)
    return list(seen.values())


def graph_float_ops(dtype: str = "int8", acts: Sequence[str] = ("hswish", "hsigmoid", "gelu", "tanh", "sigmoid",
                                                                  "relu", "relu6", "leakyrelu")) -> list[str]:
    """Activations that onnxruntime's optimised INT8 graph still runs in FP32 (a float op between DQ and Q).

    Parameters
    ----------
    dtype : str
        Only ``int8`` graphs have FP32 islands (``fp32``: none).
    acts : sequence of str
        The activations to check.

    Returns
    -------
    list of str
    """
    if dtype != "int8":
        return []
    out = []
    for act in acts:
        g = executed_graph(KernelUnit("act", {"hw": 8, "cin": 8, "act": act}).to_onnx(), "int8")
        ops = [n for n in g.graph.node if n.domain in ("", "ai.onnx")
               and n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Transpose", "Reshape", "Flatten")]
        if ops:
            out.append(act)
    return out


def fusion_rules_from_times(times: dict[str, float], backend: str, dtype: str,
                            pairs: Sequence[tuple[str, str, str]] = DEFAULT_PAIRS, hw: int = 28,
                            channels: int = 64) -> dict:
    """Rules from measured unit times (``{unit key: ms}``): each pair fused or not by nn-Meter's test.

    Pairs not measured keep the shipped default; the result lists every pair's T1, T2, T12 and verdict.

    Parameters
    ----------
    times : dict
        ``{unit key: ms}`` of the ``fusion_pair_units``.
    backend : str
    dtype : str
    pairs : sequence of (rule field, op1 kernel type, activation)
    hw : int
    channels : int
        As given to ``fusion_pair_units``.

    Returns
    -------
    dict
        The rules (``RULE_FIELDS``) with ``backend``, ``dtype`` and the ``measured`` pairs.
    """
    rules = default_rules(backend, dtype)
    measured = []
    for field, op1, act in pairs:
        u1, u2, u12 = _pair_units(op1, act, hw, channels)
        if not all(u.key in times for u in (u1, u2, u12)):
            continue
        t1, t2, t12 = times[u1.key], times[u2.key], times[u12.key]
        fused = t1 + t2 - t12 > FUSED_SHARE * min(t1, t2)
        measured.append({"field": field, "op1": op1, "op2": act, "t1_ms": t1, "t2_ms": t2, "t12_ms": t12,
                         "fused": bool(fused)})
        acts = [a for a in rules[field] if a != act]
        rules[field] = sorted(acts + [act]) if fused else acts
    return {**rules, "backend": backend, "dtype": dtype, "measured": measured}


def measure_fusion_rules(backend: Any = "ort", dtype: str = "int8", db: Any = None, device: str | None = None,
                         pairs: Sequence[tuple[str, str, str]] = DEFAULT_PAIRS, hw: int = 28, channels: int = 64,
                         rounds: int = 1, progress: bool = True, statistic: str = "median_ms") -> dict:
    """Time the pairs' units with the collector into ``db`` and derive the device's fusion rules.

    Parameters
    ----------
    backend : a backend name or instance (the collector's).
    dtype : int8 or fp32; for int8 on ort, ``float_ops`` is read from the executed graph.
    db : a latency store (rows stay there: the device's data; a rerun reuses them).
    rounds : the collector's rounds per unit.
    statistic : the timing statistic compared (``min_ms``, ``median_ms``; ``ratio`` when profiled with the reference).

    Returns
    -------
    dict: the rules (``RULE_FIELDS``) with ``backend``, ``dtype``, ``device`` and the ``measured`` pairs.
    """
    be = create_backend(backend) if isinstance(backend, str) else backend
    units = fusion_pair_units(pairs, hw, channels)
    summary = run_profile(units, be, [dtype], db=db, device=device, progress=progress, rounds=rounds)
    df = db.read_measurements(device=summary["device"], dtype=dtype, kind="kernel", status="ok")
    df = df[df["threads"] == be.threads]
    col = "ratio" if statistic == "ratio" and df["ratio"].notna().all() else statistic
    times = {k: float(v) for k, v in zip(df["key"], df[col])}
    rules = fusion_rules_from_times(times, be.name, dtype, pairs, hw, channels)
    if dtype == "int8" and be.name == "ort":
        rules["float_ops"] = graph_float_ops("int8")
    rules["device"] = device or default_device(be)
    rules["statistic"] = col
    return rules
