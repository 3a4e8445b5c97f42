"""ort INT8, 2 threads: do the 50 validation subnets' timings repeat across runs, by which statistic?

usage: repeat_2t.py GT_2T OUT.json RUN.db ... [--pooled POOLED.db]

Every pair of runs (each a ``spaceevo validate --rounds 20`` of the same 50 subnets into its own store): one
run's statistic read as a prediction of the other's (+-10%, +-5%, MAPE, Kendall tau), its level (median ratio)
and the same after removing that level; then the full-profile predictors of ``min_ms`` and ``median_ms``
(``GT_2T/local-<stat>.pred``) against every run and the pooled store."""
import itertools, json, sys
from pathlib import Path
import numpy as np
from spaceevo.datasets import LatencyStore
from spaceevo.predictors import latency_metrics, load_predictor

args = sys.argv[1:]
pooled = None
if "--pooled" in args:
    i = args.index("--pooled"); pooled = args[i + 1]; args = args[:i] + args[i + 2:]
gt, out, runs = Path(args[0]), Path(args[1]), args[2:]

def read(db):
    with LatencyStore(db) as st:
        return st.read_measurements(kind="model").set_index("key")

data = {Path(r).stem: read(r) for r in runs}
if pooled:
    data["pooled"] = read(pooled)
keys = sorted(set.intersection(*(set(d.index) for d in data.values())))
r3 = lambda m: {k: round(float(v), 4) for k, v in m.items()}
res = {"n": len(keys), "runs": {n: {"start": str(d["created_at"].min()), "rounds": int(d["rounds"].median())}
                                for n, d in data.items()}, "pairs": {}, "full_profile": {}}
names = [n for n in data if n != "pooled"]
for a, b in itertools.combinations(names, 2):
    for stat in ("min_ms", "median_ms"):
        x, y = data[a].loc[keys, stat].to_numpy(float), data[b].loc[keys, stat].to_numpy(float)
        lvl = float(np.median(y / x))
        res["pairs"][f"{b} vs {a} {stat}"] = {"level": round(lvl, 4), "as_is": r3(latency_metrics(x, y)),
                                              "level_removed": r3(latency_metrics(x, y / lvl))}
cfg = data[names[0]].loc[keys, "config"]
subs = [json.loads(c)["subnet"] for c in cfg]
for stat in ("min_ms", "median_ms"):
    pred = load_predictor(gt / f"local-{stat}.pred")
    p = np.array([pred.predict_subnet("onnxw-151122-023231", s)["latency_ms"] for s in subs])
    for n, d in data.items():
        res["full_profile"][f"{stat} vs {n}"] = r3(latency_metrics(d.loc[keys, stat].to_numpy(float), p))
out.write_text(json.dumps(res, indent=1))
for k, v in res["pairs"].items():
    print(f"{k:28s} level {v['level']:.3f}  +-10% {v['as_is']['acc_10pct']:5.1f}  +-5% {v['as_is']['acc_5pct']:5.1f}  "
          f"MAPE {v['as_is']['mape']:5.2f}  tau {v['as_is']['kendall_tau']:.3f} | level removed +-10% "
          f"{v['level_removed']['acc_10pct']:5.1f} tau {v['level_removed']['kendall_tau']:.3f}")
for k, v in res["full_profile"].items():
    print(f"full profile {k:22s} +-10% {v['acc_10pct']:5.1f}  +-5% {v['acc_5pct']:5.1f}  MAPE {v['mape']:5.2f}  "
          f"tau {v['kendall_tau']:.3f}")
