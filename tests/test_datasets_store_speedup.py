"""INT8 / FP32 speed-up per unit and type: INT8 slow-downs are shown, not hidden."""

from __future__ import annotations

import pandas as pd
import pytest

from spaceevo.datasets.speedup import int8_speedup, plot_speedup


def rows(unit_type: str, key: str, int8_ms: float, fp32_ms: float, device: str = "dev") -> list[dict]:
    base = {"device": device, "threads": 1, "kind": "kernel", "type": unit_type, "key": key, "status": "ok"}
    return [{**base, "dtype": "int8", "median_ms": int8_ms}, {**base, "dtype": "fp32", "median_ms": fp32_ms}]


@pytest.fixture
def frame() -> pd.DataFrame:
    data = rows("conv-bn-act", "c1", 1.0, 3.0) + rows("conv-bn-act", "c2", 2.0, 5.0) + \
        rows("se", "s1", 0.4, 0.2) + rows("se", "s2", 0.3, 0.33) + rows("hswish", "h1", 0.1, 0.1)
    data.append({"device": "dev", "threads": 1, "kind": "kernel", "type": "relu", "key": "r1", "status": "ok",
                 "dtype": "int8", "median_ms": 0.1})  # no fp32 twin: left out
    data.append({**rows("fc", "f1", 9.0, 1.0)[0], "status": "failed"})
    return pd.DataFrame(data)


def test_speedup_per_unit_and_type(frame):
    per_unit, per_type = int8_speedup(frame)
    assert set(per_unit["key"]) == {"c1", "c2", "s1", "s2", "h1"}
    assert per_unit.set_index("key").loc["s1", "speedup"] == pytest.approx(0.5)
    t = per_type.set_index("type")
    assert t.loc["conv-bn-act", "median_speedup"] == pytest.approx(2.75)
    assert t.loc["se", "int8_slower_frac"] == pytest.approx(0.5)
    assert t.loc["se", "min_speedup"] == pytest.approx(0.5) and t.loc["conv-bn-act", "units"] == 2
    assert per_type["median_speedup"].is_monotonic_increasing


def test_plot(frame, tmp_path):
    per_unit, _ = int8_speedup(frame)
    out = plot_speedup(per_unit, tmp_path / "s.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_needs_both_dtypes(frame):
    with pytest.raises(ValueError, match="needs units measured in both int8 and fp32"):
        int8_speedup(frame[frame["dtype"] == "int8"])
    with pytest.raises(ValueError, match=r"lack columns \['median_ms'\]"):
        int8_speedup(frame.drop(columns=["median_ms"]))
