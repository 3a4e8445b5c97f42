"""Ort INT8 whole subnet: 1 thread vs 2 threads with and without spinning, interleaved rounds; min / median."""
import json, sys, time
import numpy as np
import onnxruntime as ort
from spaceevo.latency import SubnetUnit
from spaceevo.latency._ort import OrtBackend
from spaceevo.datasets import LatencyStore

with LatencyStore("/work/gt/ort-int8-1t/val.db") as st:
    val = st.read_measurements(kind="model")
subs = [json.loads(c)["subnet"] for c in val["config"]][:3]
be = OrtBackend(threads=1)
res = {}
for sn in subs:
    model = be.prepare(SubnetUnit("onnxw-151122-023231", sn), "int8")
    data = model.SerializeToString()
    from spaceevo.latency._ort import input_feeds
    feeds = input_feeds(model, 0)
    sess = {}
    for name, threads, spin in (("1t", 1, "0"), ("2t-spin", 2, "1"), ("2t-nospin", 2, "0")):
        o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
        o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL; o.log_severity_level = 3
        o.add_session_config_entry("session.intra_op.allow_spinning", spin)
        sess[name] = ort.InferenceSession(data, o, providers=["CPUExecutionProvider"])
    times = {k: [] for k in sess}
    for r in range(20):
        for k, s in sess.items():
            for _ in range(3): s.run(None, feeds)
            for _ in range(10):
                t = time.perf_counter(); s.run(None, feeds); times[k].append((time.perf_counter() - t) * 1e3)
    res[sn] = {k: {"min": float(np.min(v)), "p10": float(np.percentile(v, 10)), "median": float(np.median(v)),
                   "p90": float(np.percentile(v, 90))} for k, v in times.items()}
    print(sn, {k: " / ".join(f"{x:.2f}" for x in d.values()) for k, d in res[sn].items()}, flush=True)
json.dump(res, open(sys.argv[1], "w"), indent=1)
