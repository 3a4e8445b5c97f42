"""Does a 2-thread reference block track the 2-core VM's changing 2-thread speed better than the 1-thread one?

Three ort INT8 subnets timed with 2 threads (spinning, as deployed) in 40 rounds spread over a few minutes,
each round beside the reference block in a 1-thread session and in a 2-thread session without spinning.
Per round: each one's fastest of 10 samples. Reported: round-to-round CV of the subnet's time and of its
ratios to either reference (the smaller, the better that reference cancels the machine's state)."""
import json, sys, time
import numpy as np
from spaceevo.latency import SubnetUnit, BlockUnit, REFERENCE_BLOCK
from spaceevo.space import BlockConfig
from spaceevo.latency._ort import OrtBackend
from spaceevo.datasets import LatencyStore

with LatencyStore("/work/gt/ort-int8-2t/val-min_ms.db") as st:
    val = st.read_measurements(kind="model")
subs = [json.loads(c)["subnet"] for c in val["config"]][:3]
be = OrtBackend(threads=2)
ref_model = be.prepare(BlockUnit(BlockConfig.parse(REFERENCE_BLOCK)), "int8")
ref1 = be.open_runner(ref_model, threads=1)
o = be.session(ref_model, threads=2)  # spinning on: make a no-spin 2-thread one by hand
import onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = 2; opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL; opts.log_severity_level = 3
opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
from spaceevo.latency._ort import input_feeds
rs = ort.InferenceSession(ref_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
rf = input_feeds(ref_model, 0)
ref2 = lambda: rs.run(None, rf)
del o
units = [be.open_runner(be.prepare(SubnetUnit("onnxw-151122-023231", s), "int8")) for s in subs]

def fastest(run, n=10, loops=1):
    for _ in range(2): run()
    best = 1e9
    for _ in range(n):
        t = time.perf_counter()
        for _ in range(loops): run()
        best = min(best, (time.perf_counter() - t) * 1e3 / loops)
    return best

rows = []
t0 = time.time()
for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
    for i, u in enumerate(units):
        m = fastest(u); time.sleep(0.02)
        a = fastest(ref1, loops=4); b = fastest(ref2, loops=4)
        rows.append({"round": r, "subnet": i, "unit": m, "ref1t": a, "ref2t_nospin": b, "t": time.time() - t0})
    time.sleep(4)
out = {"rows": rows}
summ = {}
for i in range(len(units)):
    u = np.array([x["unit"] for x in rows if x["subnet"] == i])
    a = np.array([x["ref1t"] for x in rows if x["subnet"] == i]); b = np.array([x["ref2t_nospin"] for x in rows if x["subnet"] == i])
    cv = lambda v: float(v.std() / v.mean())
    summ[i] = {"cv_unit": cv(u), "cv_ratio_ref1t": cv(u / a), "cv_ratio_ref2t": cv(u / b),
               "corr_ref1t": float(np.corrcoef(u, a)[0, 1]), "corr_ref2t": float(np.corrcoef(u, b)[0, 1]),
               "unit_min_over_median": float(u.min() / np.median(u))}
    print(i, {k: round(v, 3) for k, v in summ[i].items()}, flush=True)
out["summary"] = summ
json.dump(out, open(sys.argv[1], "w"), indent=1)
