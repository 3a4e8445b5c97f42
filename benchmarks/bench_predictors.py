"""Query throughput of the predictor's fast path against a per-block Python loop and nn-Meter's path.

Run: ``python benchmarks/bench_predictors.py [--predictor P] [--space S] [--batch N]``. All figures come
from one run, side by side. nn-Meter's shipped predictors need a download (no network here), so its
prediction path (``nn_meter.predictor.prediction.predict_by_kernel.nn_predict``: kernel features ->
per-kernel RandomForest with nn-Meter's settings) runs on RandomForests trained here on the same blocks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spaceevo.space import SearchSpace
from spaceevo.space._ops import Conv, Linear, SE, Residual


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _nnmeter_kernels(cfg) -> list[dict]:
    """nn-Meter kernel units (its dict format) of a block, from the block IR."""
    units, hw = [], cfg.hw

    def walk(ops, hw):
        for op in ops:
            if isinstance(op, Residual):
                out_hw = walk(op.body, hw)
                walk(op.shortcut, hw)
                units.append({"op": "add", "input_tensors": [[1, out_hw, out_hw, 1], [1, out_hw, out_hw, 1]]})
                hw = out_hw
            elif isinstance(op, Conv):
                kind = "dwconv-bn-relu" if op.groups > 1 and op.groups == op.cin else "conv-bn-relu"
                units.append({"op": kind, "cin": op.cin, "cout": op.cout, "ks": [op.k, op.k],
                              "strides": [op.stride, op.stride], "inputh": hw})
                hw = (hw - 1) // op.stride + 1
            elif isinstance(op, Linear):
                units.append({"op": "fc", "cin": op.cin, "cout": op.cout})
            elif isinstance(op, SE):
                units.append({"op": "se", "input_tensors": [[1, hw, hw, op.channels]]})
        return hw

    walk(cfg.ops, hw)
    return units


def _nnmeter_prediction():
    """nn-Meter's ``predictor.prediction`` package, loaded without ``nn_meter/__init__`` (which needs
    ``pkg_resources``, absent from this environment's setuptools)."""
    import importlib
    import importlib.util
    import sys
    import types

    name = "_nnmeter_prediction"
    if name not in sys.modules:
        spec = importlib.util.find_spec("nn_meter")
        root = spec.submodule_search_locations[0]
        pkg = types.ModuleType(name)
        pkg.__path__ = [f"{root}/predictor/prediction"]
        sys.modules[name] = pkg
    return (importlib.import_module(f"{name}.predict_by_kernel"), importlib.import_module(f"{name}.extract_feature"),
            importlib.import_module(f"{name}.utils"))


def _nnmeter_predictors(block_units: list[list[dict]], seed: int = 10) -> dict:
    """nn-Meter-style RandomForests per kernel kind, fitted on synthetic targets of these kernels."""
    _pbk, ef, ut = _nnmeter_prediction()
    get_predict_features, get_kernel_name = ef.get_predict_features, ut.get_kernel_name
    from sklearn.ensemble import RandomForestRegressor

    from spaceevo.predictors import NNMETER_RF_SETTINGS

    feats: dict[str, list] = {}
    for units in block_units:
        for layer in get_predict_features(units).values():
            (op, f), = layer.items()
            feats.setdefault(get_kernel_name(op), []).append(f)
    kinds = {"conv-bn-relu": "conv", "dwconv-bn-relu": "dwconv", "fc": "fc"}
    out = {}
    for name, rows in feats.items():
        X = np.array(rows, dtype=float)
        y = 0.01 + X.sum(axis=1) / 1e4
        s = NNMETER_RF_SETTINGS[kinds.get(name, "other")]
        mf = s["max_features"] if isinstance(s["max_features"], float) else min(s["max_features"], X.shape[1])
        out[name] = RandomForestRegressor(n_estimators=s["n_estimators"], max_depth=s["max_depth"], max_features=mf,
                                          min_samples_leaf=1, random_state=10, n_jobs=1).fit(X, y)
    return out


def main() -> None:
    """Run the benchmark and print the ratios."""
    from spaceevo.predictors import load_predictor, train_predictor
    from spaceevo.predictors._synthetic import synthetic_measurements

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--predictor", help="predictor name or file (default: one trained on synthetic data)")
    ap.add_argument("--space", default="onnxw-151122-023231")
    ap.add_argument("--batch", type=int, default=1_000_000)
    ap.add_argument("--loop-subnets", type=int, default=20)
    args = ap.parse_args()

    sp = SearchSpace.parse(args.space)
    if args.predictor:
        pred = load_predictor(args.predictor)
    else:
        pred = train_predictor(synthetic_measurements(sp, n_subnets=60, seed=0), device="synthetic", cv_folds=0)
    t = time.perf_counter()
    table = pred.table(sp)
    build_s = time.perf_counter() - t
    print(f"predictor: {pred!r}")
    print(f"table build: {len(table.configs):,} block configs in {build_s:.2f} s (once per space)")

    enc = table.random_encoded(args.batch, seed=0)
    batch_s = _best(lambda: pred.predict_encoded(sp, *enc))
    batch_rate = args.batch / batch_s
    subs = sp.sample(2000, seed=1)
    enc_s = _best(lambda: table.encode(subs)) / len(subs)
    list_s = _best(lambda: pred.predict_subnets(sp, subs)) / len(subs)

    one = subs[0]
    n_one = 20000
    t = time.perf_counter()
    for s in subs[:n_one] * (n_one // len(subs)):
        pred.predict_subnet_fast(sp, s)
    one_s = (time.perf_counter() - t) / n_one

    loop = subs[: args.loop_subnets]
    t = time.perf_counter()
    for s in loop:
        sum(float(pred.predict_blocks([b.config])[0]) for b in sp.blocks(s))
    loop_model_s = (time.perf_counter() - t) / len(loop)
    cache = {c: v for c, v in zip(table.configs, table.latency)}
    t = time.perf_counter()
    for s in subs:
        sum(cache[b.config] for b in sp.blocks(s))
    loop_cache_s = (time.perf_counter() - t) / len(subs)

    nn_predict = _nnmeter_prediction()[0].nn_predict

    units = [[u for b in sp.blocks(s) for u in _nnmeter_kernels(b.config)] for s in loop]
    nnm = _nnmeter_predictors(units)
    t = time.perf_counter()
    for u in units:
        nn_predict(nnm, u)
    nnm_s = (time.perf_counter() - t) / len(units)
    # same blocks, our model path (one predict_blocks call per subnet)
    t = time.perf_counter()
    for s in loop:
        pred.predict_blocks([b.config for b in sp.blocks(s)]).sum()
    ours_model_s = (time.perf_counter() - t) / len(loop)

    print(f"\n{'path':58s} {'per subnet':>12s} {'subnets/s':>12s} {'fast-batch speed-up':>20s}")
    rows = [
        ("fast path, batched, pre-encoded (predict_encoded)", batch_s / args.batch),
        ("fast path, batched, from Subnet objects (predict_subnets)", list_s),
        ("  of which: encoding Subnet objects", enc_s),
        ("fast path, one subnet (predict_subnet_fast)", one_s),
        ("per-block Python loop over cached latencies (dict)", loop_cache_s),
        ("per-block Python loop, one model call per block", loop_model_s),
        ("spaceevo model path, one predict_blocks call per subnet", ours_model_s),
        ("nn-Meter nn_predict (kernel features + RandomForests)", nnm_s),
    ]
    for name, s in rows:
        print(f"{name:58s} {s * 1e6:10.2f}us {1 / s:12,.0f} {s / (batch_s / args.batch):19,.0f}x")
    print(f"\nbatched throughput: {batch_rate:,.0f} subnets/s (target >= 1,000,000); "
          f"one subnet: {one_s * 1e6:.1f} us (target <= 100 us)")
    print(f"ratios: fast batched vs per-block loop (model) {loop_model_s / (batch_s / args.batch):,.0f}x, "
          f"vs per-block loop (dict cache) {loop_cache_s / (batch_s / args.batch):,.0f}x, "
          f"vs nn-Meter path {nnm_s / (batch_s / args.batch):,.0f}x; one-subnet fast vs nn-Meter "
          f"{nnm_s / one_s:,.0f}x")


if __name__ == "__main__":
    main()
