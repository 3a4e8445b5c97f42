"""Profiling a device farm on Ray: one local cluster for the module, simulated devices and a real one.

Simulated devices time with the shared fake backend (``farm_helpers.FarmFakeBackend`` adds a delay, a SIGKILL of
its own worker, a broken device); the real one is ``ort`` on one core. Rows must equal a single-process run of
the same seed, a killed worker or driver must lose and duplicate nothing, and a rerun must complete.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_backend import FakeBackend
from store_helpers import wait_for_rows

from spaceevo.datasets.store import STAT_FIELDS, LatencyStore
from spaceevo.latency import BlockUnit, register_backend, run_profile
from spaceevo.latency._backend import _BACKENDS
from spaceevo.latency._pool import DeviceSpec, load_pool, local_pool, parse_pool, pool_resources
from spaceevo.space import BlockConfig

pytestmark = pytest.mark.farm

TESTS = Path(__file__).resolve().parent
RESOURCES = ["fake-a", "fake-b", "ort-0", "phone-a", "fake-core0", "fake-core1"]
FAST = {"repeats": 5, "warmup": 2, "min_sample_ms": 0.0, "max_attempts": 1}
KEY_COLS = ["kind", "key", "dtype", "device", "backend", "threads", "status"]


def _units(n: int) -> list[BlockUnit]:
    return [BlockUnit(BlockConfig("MobileNetV2ResBlock", 8, 16, 16 + 8 * i, 3, 4.0, 1, "relu6")) for i in range(n)]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster (2 CPUs, the devices' resources) for the module; the fake backends registered."""
    ray = pytest.importorskip("ray", reason="the farm tests need Ray: pip install -e '.[farm]'")
    from spaceevo.latency._farm_cluster import connect

    register_backend("fake", "fake_backend:FakeBackend")
    register_backend("farmfake", "farm_helpers:FarmFakeBackend")
    connect("local", [DeviceSpec(n, "fake") for n in RESOURCES], num_cpus=2,
            runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield ray
    ray.shutdown()
    _BACKENDS.unregister("fake")
    _BACKENDS.unregister("farmfake")


def _farm(units, pool, db, **kw):
    from spaceevo.latency._farm import run_farm

    opts = {"fake": {}, "farmfake": {}, "ort": FAST, **kw.pop("backend_opts", {})}
    with LatencyStore(db) as st:
        return run_farm(units, pool, ["int8"], db=st, address="local", backend_opts=opts, rounds=kw.pop("rounds", 2),
                        progress=False, **kw)


def _rows(db, device=None):
    with LatencyStore(db) as st:
        df = st.read_measurements(device=device, status=None)
    return df.sort_values(["key", "dtype"]).reset_index(drop=True)


def _single(units, db, device: str, rounds: int = 2):
    with LatencyStore(db) as st:
        run_profile(units, FakeBackend(), ["int8"], db=st, device=device, seed=0, rounds=rounds, progress=False)
    return _rows(db)


def _same_rows(farm, single) -> None:
    cols = KEY_COLS + [f for f in STAT_FIELDS if f not in ("other_cpu", "steal")]  # the machine's load differs
    assert len(farm) == len(single) and len(farm) > 0
    assert farm[cols].equals(single[cols]), (farm[cols], single[cols])


def test_two_fake_devices_and_one_real_one_equal_a_single_process_run(cluster, tmp_path):
    units = _units(6)
    pool = [DeviceSpec("fake-a", "fake", cores=(0,)), DeviceSpec("fake-b", "fake", cores=(1,)),
            DeviceSpec("ort-0", "ort", cores=(0,))]
    s = _farm(units, pool, tmp_path / "farm.db")
    assert (s["total"], s["ok"], s["failed"], s["pending"], s["quarantined"]) == (12, 12, 0, 0, [])
    by_backend = {d["backend"]: d for d in s["datasets"]}
    fake, ort = by_backend["fake"], by_backend["ort"]
    assert fake["devices"] == ["fake-a", "fake-b"] and ort["devices"] == ["ort-0"]  # same fingerprint: one dataset
    assert {d["name"]: d["units"] for d in s["devices"]} == {"fake-a": 3, "fake-b": 3, "ort-0": 6}

    _same_rows(_rows(tmp_path / "farm.db", fake["device"]), _single(units, tmp_path / "one.db", fake["device"]))
    real = _rows(tmp_path / "farm.db", ort["device"])
    assert len(real) == 6 and (real["status"] == "ok").all() and real["n"].eq(10).all() and real["rounds"].eq(2).all()
    with LatencyStore(tmp_path / "farm.db") as st:
        assert {n: d["status"] for n, d in st.device_status().items()} == dict.fromkeys(["fake-a", "fake-b", "ort-0"],
                                                                                        "ok")
        assert set(_rows(tmp_path / "farm.db")["fingerprint_id"]) <= set(st.fingerprints())

    again = _farm(units, pool, tmp_path / "farm.db")
    assert (again["measured"], again["skipped"]) == (0, 12)


def _round_count(db) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT kind || key || device || dtype || round) "
                                  "FROM rounds").fetchone()
    finally:
        con.close()
    return n, distinct


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(cluster, tmp_path):
    units = _units(8)
    marker = tmp_path / "killed"
    pool = [DeviceSpec("fake-a", "farmfake", cores=(0,), options={"kill_at": 4, "marker": str(marker)}),
            DeviceSpec("fake-b", "fake", cores=(1,)), DeviceSpec("ort-0", "ort", cores=(0,))]
    s = _farm(units, pool, tmp_path / "farm.db", rounds=3)
    assert marker.exists()  # the worker of fake-a SIGKILLed itself mid-chunk
    devs = {d["name"]: d for d in s["devices"]}
    assert devs["fake-a"]["failures"] == 1 and devs["fake-a"]["status"] == "ok"
    assert (s["ok"], s["failed"], s["pending"]) == (16, 0, 0)
    fake = next(d["device"] for d in s["datasets"] if d["backend"] == "fake")
    _same_rows(_rows(tmp_path / "farm.db", fake), _single(units, tmp_path / "one.db", fake, rounds=3))
    assert _round_count(tmp_path / "farm.db") == (48, 48)  # 8 units x 3 rounds x 2 datasets, each once
    assert _rows(tmp_path / "farm.db")[["key", "device"]].duplicated().sum() == 0
    again = _farm(units, pool, tmp_path / "farm.db", rounds=3)
    assert (again["measured"], again["skipped"]) == (0, 16)


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from spaceevo.datasets.store import LatencyStore
from spaceevo.latency import register_backend
from spaceevo.latency._farm import run_farm
from spaceevo.latency._pool import DeviceSpec
from test_latency_farm import _units

register_backend("farmfake", "farm_helpers:FarmFakeBackend")
pool = [DeviceSpec("fake-a", "farmfake", cores=(0,)), DeviceSpec("fake-b", "farmfake", cores=(1,))]
with LatencyStore({db!r}) as st:
    run_farm(_units(10), pool, ["int8"], db=st, address={address!r}, rounds=3, progress=False,
             backend_opts={{"farmfake": {{"sleep_s": 0.1}}}}, runtime_env={{"env_vars": {{"PYTHONPATH": {tests!r}}}}})
"""


def test_a_driver_killed_mid_run_resumes_from_the_store(cluster, tmp_path):
    db = tmp_path / "farm.db"
    address = cluster.get_runtime_context().gcs_address
    script = DRIVER.format(tests=str(TESTS), db=str(db), address=address)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        got = wait_for_rows(db, 8, timeout=90, table="rounds")
        assert got >= 8, proc.stderr.read().decode() if proc.poll() is not None else "no rounds in time"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kept, _ = _round_count(db)
    with LatencyStore(db) as st:
        before = len(st.read_measurements(status=None))
    assert kept < 30 and before < 10
    time.sleep(0.5)  # the dead driver's actors release their devices
    pool = [DeviceSpec("fake-a", "farmfake", cores=(0,)), DeviceSpec("fake-b", "farmfake", cores=(1,))]
    s = _farm(_units(10), pool, db, rounds=3)
    assert s["ok"] == 10 - before and s["skipped"] == before
    assert sum(d["rounds"] for d in s["devices"]) == 30 - kept  # only the missing rounds were timed
    assert _round_count(db) == (30, 30)
    _same_rows(_rows(db), _single(_units(10), tmp_path / "one.db", s["datasets"][0]["device"], rounds=3))


def test_a_device_that_keeps_failing_is_quarantined_and_its_units_go_to_the_others(cluster, tmp_path):
    units = _units(6)
    pool = [DeviceSpec("fake-a", "farmfake", cores=(0,), options={"broken": True}),
            DeviceSpec("fake-b", "fake", cores=(1,))]
    bad = {"fail_key": units[4].key}  # a unit that cannot be converted: a failed row, as in a single process
    s = _farm(units, pool, tmp_path / "farm.db", max_failures=2, backend_opts={"fake": bad, "farmfake": bad})
    assert s["quarantined"] == ["fake-a"] and (s["ok"], s["failed"], s["pending"]) == (5, 1, 0)
    failed = _rows(tmp_path / "farm.db").set_index("key").loc[units[4].key]
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: cannot convert"
    with LatencyStore(tmp_path / "farm.db") as st:
        status = st.device_status()
    assert status["fake-a"]["status"] == "quarantined"
    assert "RuntimeError: device unplugged" in status["fake-a"]["reason"]
    assert status["fake-b"]["status"] == "ok"


def test_different_devices_get_their_own_rows_and_device_names_one_dataset(cluster, tmp_path):
    pool = [DeviceSpec("fake-a", "fake", cores=(0,), dataset="lab-x"), DeviceSpec("fake-b", "fake", cores=(1,),
                                                                                 dataset="lab-y")]
    s = _farm(_units(2), pool, tmp_path / "farm.db")
    assert sorted(d["device"] for d in s["datasets"]) == ["lab-x", "lab-y"] and s["ok"] == 4
    with pytest.raises(ValueError, match="--device 'mine' names one dataset, but the pool has 2 kinds"):
        _farm(_units(2), pool, tmp_path / "farm.db", device="mine")


# -- bad input -------------------------------------------------------------------------------------
def test_an_adb_serial_that_is_not_connected_names_the_entry_and_the_fix(cluster, tmp_path):
    adb = tmp_path / "adb"
    adb.write_text(f"#!{sys.executable}\nprint('List of devices attached')\nprint('OTHER\\tdevice')\n")
    adb.chmod(0o755)
    bm = tmp_path / "benchmark_model"
    bm.write_text("")
    pool = [DeviceSpec("phone-a", "adb", host="lab-host-2", serial="PIXEL9",
                       options={"adb": str(adb), "benchmark_model": str(bm)})]
    with pytest.raises(ValueError, match=r"pool entry 'phone-a' \(adb on lab-host-2\): AdbError: serial='PIXEL9' "
                                         r"is not attached; attached devices: \['OTHER'\]; plug the phone in"):
        _farm(_units(1), pool, tmp_path / "farm.db")


def test_a_ray_address_that_does_not_answer(cluster, tmp_path):
    with pytest.raises(ValueError, match=r"--ray '127.0.0.1:9': no Ray cluster answers there .*ray start --head"):
        from spaceevo.latency._farm_cluster import connect

        connect("127.0.0.1:9", [DeviceSpec("fake-a", "fake")])
    with pytest.raises(ValueError, match="--ray 'nowhere' is not an address; use HOST:PORT"):
        connect("nowhere", [DeviceSpec("fake-a", "fake")])


def test_a_device_without_its_resource_says_how_to_add_it(cluster, tmp_path):
    with pytest.raises(ValueError, match=r"pool entry 'gpu-9': the Ray cluster has no resource 'spaceevo:gpu-9'; "
                                         r".*--resources='\{\"spaceevo:gpu-9\": 1.0\}'"):
        _farm(_units(1), [DeviceSpec("gpu-9", "fake", host="h9")], tmp_path / "farm.db")


@pytest.mark.parametrize("devices, message", [
    ([{"name": "a", "backend": "trt"}], r"farm.yaml devices\[0\] 'a': unknown backend 'trt'; valid backends: .*ort"),
    ([{"name": "a", "backend": "ort"}, {"name": "a", "backend": "ort"}],
     r"devices\[1\] 'a': duplicate device name 'a' \(also devices\[0\]\); give every device its own name"),
    ([{"name": "p", "backend": "adb"}], r"devices\[0\] 'p': an adb device needs serial: "),
    ([{"name": "a", "backend": "ort", "serial": "X"}], r"serial is for adb devices only"),
    ([{"name": "a", "backend": "ort", "cores": ["x"]}], r"cores=\['x'\] must be a list of core numbers"),
    ([{"name": "a", "backend": "ort", "core": [0]}], r"unknown key\(s\) \['core'\]; allowed: \['name', "),
    ([{"name": "a b", "backend": "ort"}], r"devices\[0\]: name='a b' must be 1-64 letters"),
    ([{"name": "a", "backend": "ort", "options": {"cores": [1]}}], r"set \['cores'\] as the entry's own key"),
    ([{"name": "a", "backend": "ort", "options": 3}], r"options=3 must be a mapping"),
    ([{"name": "a", "backend": "ort", "dataset": ""}], r"dataset='' must be a non-empty string"),
    (["ort"], r"devices\[0\]: each device is a mapping"),
    ([], r"farm.yaml: a pool file is a mapping with a non-empty 'devices' list"),
])
def test_bad_pool_files(tmp_path, devices, message):
    import yaml

    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump({"devices": devices}))
    with pytest.raises(ValueError, match=message):
        load_pool(path)


def test_pool_file_reading(tmp_path):
    path = tmp_path / "farm.yaml"
    path.write_text("devices:\n  - {name: cpu0, backend: ort, cores: 0}\n"
                    "  - {name: pixel, backend: adb, serial: S1, host: h2, options: {xnnpack: false}}\n")
    cpu, phone = load_pool(path)
    assert cpu.cores == (0,) and cpu.resource == "spaceevo:cpu0"
    assert phone.backend_opts({"threads": 2, "cores": [5], "serial": None}) == {"threads": 2, "xnnpack": False,
                                                                               "serial": "S1"}
    assert pool_resources([cpu, phone], host="h2") == {"spaceevo:pixel": 1.0}
    with pytest.raises(FileNotFoundError, match="--pool .*nope.yaml' does not exist"):
        load_pool(tmp_path / "nope.yaml")
    path.write_text("devices: [\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_pool(path)
    with pytest.raises(ValueError, match="unknown top-level key"):
        parse_pool({"devices": [{"name": "a", "backend": "ort"}], "hosts": []})
    assert [d.name for d in local_pool("ort", cores=[0, 1])] == ["ort-core0", "ort-core1"]
    assert [d.serial for d in local_pool("adb", serials=["A", "B"])] == ["A", "B"]
    with pytest.raises(ValueError, match="unknown backend 'trt'"):
        local_pool("trt")


def test_without_ray_the_error_says_how_to_get_it(monkeypatch):
    from spaceevo.latency._farm_cluster import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"needs Ray, the optional 'farm' extra: pip install 'spaceevo\[farm\]'"):
        import_ray()


# -- the command line -------------------------------------------------------------------------------
def _cli(args, capsys):
    from spaceevo.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


CLI = ["profile", "--space", "onnxw-151122-023231", "--resolution", "160", "--limit", "3", "--repeats", "5",
       "--warmup", "2", "--min-sample-ms", "0", "--rounds", "2", "--no-progress", "--no-fixed-blocks",
       "--no-reference"]


def test_cli_profile_on_a_pool_file_and_on_the_local_pool(cluster, tmp_path, capsys):
    pool = tmp_path / "farm.yaml"
    pool.write_text("devices:\n  - {name: fake-a, backend: fake, cores: [0]}\n"
                    "  - {name: fake-b, backend: fake, cores: [1]}\n")
    code, out, err = _cli([*CLI, "--ray", "local", "--pool", str(pool), "--db", str(tmp_path / "f.db"), "--json"],
                          capsys)
    assert code == 0, err
    s = json.loads(out)
    assert (s["ok"], s["pending"]) == (3, 0) and s["datasets"][0]["devices"] == ["fake-a", "fake-b"]

    code, out, err = _cli([*CLI, "--backend", "fake", "--ray", "local", "--db", str(tmp_path / "l.db")], capsys)
    assert code == 0, err  # --pool local: one fake device per core of this host
    assert "farm profile: 2 devices" in out and "devices" in out  # the two tables
    with LatencyStore(tmp_path / "l.db") as st:
        assert sorted(st.device_status()) == ["fake-core0", "fake-core1"] and st.count() == 3


@pytest.mark.parametrize("extra, message", [
    (["--ray", "local", "--pool", "{tmp}/none.yaml"], "--pool '{tmp}/none.yaml' does not exist"),
    (["--ray", "local", "--pool", "{tmp}/bad.yaml"], "bad.yaml devices[0] 'x': unknown backend 'trt'"),
    (["--ray", "127.0.0.1:9", "--pool", "local"], "--ray '127.0.0.1:9': no Ray cluster answers there"),
    (["--ray", "local", "--core", "0"], "--core/--serial do not combine with --ray"),
    (["--ray", "local", "--dry-run"], "--dry-run does not combine with --ray"),
])
def test_cli_farm_errors_exit_2(tmp_path, capsys, extra, message):
    (tmp_path / "bad.yaml").write_text("devices:\n  - {name: x, backend: trt}\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code, _out, err = _cli([*CLI, "--db", str(tmp_path / "e.db"), *args], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in last, err


def test_cli_without_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _out, err = _cli([*CLI, "--ray", "local", "--db", str(tmp_path / "e.db")], capsys)
    assert code == 2 and "pip install 'spaceevo[farm]'" in err


def test_importing_the_collector_and_the_cli_does_not_import_ray():
    code = "import sys, spaceevo.latency, spaceevo.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
