"""adb backend: command construction, the parser on benchmark_model's real output format, clear errors,
and a full measure() through a stand-in adb executable (no phone is attached here)."""

from __future__ import annotations

import math
import stat
import sys
from pathlib import Path

import pytest

from spaceevo.latency import create_backend, make_kernel
from spaceevo.latency._adb import AdbError, parse_benchmark_output, parse_getprop, stats_from_benchmark

# The real output format of TFLite's benchmark_model (as in tensorflow/tensorflow issue #42507).
BENCHMARK_OUTPUT = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [1]
Graph: [/data/local/tmp/spaceevo/0123456789abcdef.tflite]
#threads used for CPU inference: [1]
Use xnnpack: [1]
Loaded model /data/local/tmp/spaceevo/0123456789abcdef.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
The input model file size (MB): 0.004448
Initialized session in 0.855ms.
Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=15 first=49060 curr=33682 min=32825 max=49060 avg=34825.1 std=3930

Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=50 first=32891 curr=33978 min=32641 max=34005 avg=33209.4 std=450

Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=0 overall=12.8672
"""

GETPROP = """\
[ro.board.platform]: [msmnile]
[ro.build.version.release]: [13]
[ro.build.version.sdk]: [33]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.manufacturer]: [Google]
[ro.product.model]: [Pixel 4]
"""

CPUINFO = "processor\t: 0\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp " \
          "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x51\n"


def test_parser_reads_the_timed_runs_not_the_warmup():
    parsed = parse_benchmark_output(BENCHMARK_OUTPUT)
    assert parsed["runs"] == {"count": 50, "first": 32891, "curr": 33978, "min": 32641, "max": 34005,
                              "avg": 33209.4, "std": 450}
    assert parsed["warmup"]["count"] == 15
    assert parsed["summary"] == {"Init": 855.0, "First inference": 49060.0, "Warmup (avg)": 34825.1,
                                 "Inference (avg)": 33209.4}


def test_stats_are_converted_to_milliseconds():
    s = stats_from_benchmark(parse_benchmark_output(BENCHMARK_OUTPUT))
    assert s.n == 50
    assert s.mean_ms == pytest.approx(33.2094) and s.median_ms == pytest.approx(33.2094)
    assert s.min_ms == pytest.approx(32.641) and s.std_ms == pytest.approx(0.45)
    assert s.cv == pytest.approx(450 / 33209.4)
    assert math.isnan(s.p90_ms)  # benchmark_model does not report percentiles in this format


def test_parser_uses_a_reported_median_when_present():
    text = "count=20 first=10 curr=11 min=9 max=14 avg=11.5 std=1 p5=9 median=11 p95=13\n"
    s = stats_from_benchmark(parse_benchmark_output(text))
    assert s.median_ms == pytest.approx(0.011) and s.mean_ms == pytest.approx(0.0115)
    assert math.isnan(s.p90_ms)  # a p95 is not passed off as the p90


def test_parser_error_quotes_the_output():
    with pytest.raises(AdbError, match="no 'count=... avg=... std=...' line; last lines: .*Segmentation fault"):
        parse_benchmark_output("STARTING!\nSegmentation fault\n")


def test_getprop_parser():
    p = parse_getprop(GETPROP)
    assert p["ro.product.model"] == "Pixel 4" and p["ro.build.version.sdk"] == "33"


def test_benchmark_command_pins_threads_runs_and_xnnpack():
    be = create_backend("adb", threads=1, repeats=50, warmup=10, cores=[4], serial="ABC123", benchmark_model="/x/bm")
    cmd = be.benchmark_command("/data/local/tmp/spaceevo/m.tflite")
    assert cmd[:4] == ["adb", "-s", "ABC123", "shell"]
    assert cmd[4] == ("taskset 10 /data/local/tmp/spaceevo/benchmark_model --graph=/data/local/tmp/spaceevo/m.tflite "
                      "--num_threads=1 --warmup_runs=10 --warmup_min_secs=0 --num_runs=50 --min_secs=0 "
                      "--use_xnnpack=true")
    no_pin = create_backend("adb", xnnpack=False, threads=4).benchmark_command("/m.tflite", taskset=True)
    assert no_pin[:2] == ["adb", "shell"] and "taskset" not in no_pin[2]
    assert "--use_xnnpack=false" in no_pin[2] and "--num_threads=4" in no_pin[2]
    assert be.push_command("/tmp/a.tflite", "/data/local/tmp/a.tflite") == [
        "adb", "-s", "ABC123", "push", "/tmp/a.tflite", "/data/local/tmp/a.tflite"]


def test_missing_adb_gives_a_clear_error(tmp_path):
    be = create_backend("adb", adb=str(tmp_path / "no-adb"), benchmark_model=str(tmp_path / "bm"))
    assert not be.available()
    with pytest.raises(AdbError, match="was not found; install Android platform-tools"):
        be.require()


def _fake_adb(tmp_path: Path, devices: str) -> Path:
    """A stand-in ``adb`` that answers like a phone, logging each call."""
    (tmp_path / "bench.txt").write_text(BENCHMARK_OUTPUT)
    (tmp_path / "getprop.txt").write_text(GETPROP)
    (tmp_path / "cpuinfo.txt").write_text(CPUINFO)
    script = tmp_path / "adb"
    script.write_text(f"""#!{sys.executable}
import sys
args = sys.argv[1:]
with open({str(tmp_path / 'calls.log')!r}, "a") as f:
    f.write(" ".join(args) + "\\n")
if args[:2] == ["-s", "PIXEL4"]:
    args = args[2:]
if args == ["devices"]:
    print("List of devices attached")
    print({devices!r}, end="")
elif args[0] == "push":
    print("1 file pushed")
elif args[0] == "shell" and args[1] == "getprop":
    print(open({str(tmp_path / 'getprop.txt')!r}).read(), end="")
elif args[0] == "shell" and args[1].startswith("cat /proc/cpuinfo"):
    print(open({str(tmp_path / 'cpuinfo.txt')!r}).read(), end="")
elif args[0] == "shell" and "taskset" in args[1] and "benchmark_model --graph" not in args[1]:
    print("/system/bin/taskset")
elif args[0] == "shell" and "benchmark_model --graph" in args[1]:
    print(open({str(tmp_path / 'bench.txt')!r}).read(), end="")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_no_device_attached_is_a_clear_error(tmp_path):
    adb = _fake_adb(tmp_path, devices="")
    be = create_backend("adb", adb=str(adb), benchmark_model=str(adb))
    with pytest.raises(AdbError, match="no Android device is attached"):
        be.require()


def test_missing_benchmark_model_binary_is_a_clear_error(tmp_path):
    adb = _fake_adb(tmp_path, devices="PIXEL4\tdevice\n")
    be = create_backend("adb", adb=str(adb), benchmark_model=None)
    with pytest.raises(AdbError, match="benchmark_model=None is not a file"):
        be.require()


def test_measure_through_a_stand_in_phone(tmp_path, monkeypatch):
    adb = _fake_adb(tmp_path, devices="PIXEL4\tdevice\n")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF stand-in")
    be = create_backend("adb", adb=str(adb), benchmark_model=str(binary), serial="PIXEL4", cores=[7], max_attempts=1)
    monkeypatch.setattr(type(be), "prepare", lambda self, unit, dtype: b"TFL3 stand-in model")
    if not be.available():  # available() also checks TensorFlow
        pytest.skip("the adb backend converts with TensorFlow, which is not installed (spaceevo[tflite])")
    s = be.measure(make_kernel("relu", hw=8, cin=8), "int8")
    assert s.n == 50 and s.mean_ms == pytest.approx(33.2094)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert any(c.startswith("-s PIXEL4 push") and c.endswith("/data/local/tmp/spaceevo/benchmark_model") for c in calls)
    bench = [c for c in calls if "--graph=" in c]
    assert len(bench) == 1 and "taskset 80 /data/local/tmp/spaceevo/benchmark_model" in bench[0]
    fp = be.fingerprint("int8")
    assert fp["model"] == "Pixel 4" and fp["soc"] == "msmnile" and fp["android"] == "13"
    assert fp["isa"] == {"dotprod": True, "i8mm": False, "sve": False, "sve2": False}
    assert be.default_device() == "adb-pixel-4"
