"""Any model, kernel by kernel: accuracy of a kernel predictor on unseen zoo models and hand-written PyTorch nets.

One run, ort INT8, 1 thread, the collector's protocol (rounds spread over the run, reference beside every
sample, target ``norm_ms``):

1. writes a training zoo (``--train-seed``) and a validation zoo (``--val-seed``: disjoint model seeds);
2. measures the device's fusion rules (nn-Meter's op1/op2/op1+op2 test) into the store;
3. profiles the distinct kernels of the training models and the training models whole;
4. trains the LightGBM kernel predictor and nn-Meter's random forest on the same rows;
5. measures every validation model whole and compares (per family, +-10%, +-5%, MAPE, Kendall tau);
6. measures and predicts a few PyTorch networks the zoo generator did not write (exported with torch.onnx);
7. times ``predict`` of a ~100-kernel model, detection included.

Everything is kept in ``--workdir`` (stores, predictors, zoos): a killed run resumes. Results go to
``--out`` (summary.json and table.md). Run it alone (it times things): ``mylock_run.sh LOG python
benchmarks/bench_models.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def torch_nets():
    """Small PyTorch definitions of published architectures (not written by the zoo generator)."""
    import torch
    from torch import nn

    def cbr(cin, cout, k=3, s=1, g=1, act=nn.ReLU):
        pad = (k // 2) if isinstance(k, int) else (k[0] // 2, k[1] // 2)
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, pad, groups=g, bias=False), nn.BatchNorm2d(cout), act())

    class ResNeXtBlock(nn.Module):  # ResNeXt-50 (32x4d) bottleneck
        def __init__(self, cin, width, cout, s):
            super().__init__()
            self.body = nn.Sequential(cbr(cin, width, 1), cbr(width, width, 3, s, g=32),
                                      nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.short = nn.Sequential() if s == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    resnext = nn.Sequential(cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), ResNeXtBlock(64, 128, 256, 1),
                            ResNeXtBlock(256, 128, 256, 1), ResNeXtBlock(256, 256, 512, 2),
                            ResNeXtBlock(512, 256, 512, 1), ResNeXtBlock(512, 512, 1024, 2),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))

    class InceptionC(nn.Module):  # Inception-v3's factorised 7x7 module (1x7 and 7x1 convolutions)
        def __init__(self, cin, c7):
            super().__init__()
            self.b1 = cbr(cin, 192, 1)
            self.b7 = nn.Sequential(cbr(cin, c7, 1), cbr(c7, c7, (1, 7)), cbr(c7, 192, (7, 1)))
            self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), cbr(cin, 192, 1))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b7(x), self.bp(x)], 1)

    inception = nn.Sequential(cbr(3, 32, 3, 2), cbr(32, 64, 3), nn.MaxPool2d(3, 2, 1), cbr(64, 192, 3, 2),
                              InceptionC(192, 128), InceptionC(576, 160), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(576, 1000))

    class Up(nn.Module):  # U-Net decoder step: upsample, concatenate the skip, two convs
        def __init__(self, cin, cskip, cout):
            super().__init__()
            self.conv = nn.Sequential(cbr(cin + cskip, cout), cbr(cout, cout))

        def forward(self, x, skip):
            return self.conv(torch.cat([nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.e1, self.e2, self.e3 = cbr(3, 32), nn.Sequential(nn.MaxPool2d(2), cbr(32, 64)), \
                nn.Sequential(nn.MaxPool2d(2), cbr(64, 128))
            self.u2, self.u1 = Up(128, 64, 64), Up(64, 32, 32)
            self.head = nn.Conv2d(32, 2, 1)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(a)
            return self.head(self.u1(self.u2(self.e3(b), b), a))

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 4, 1), nn.ReLU(),
                                   nn.Conv2d(c // 4, c, 1), nn.Hardsigmoid())

        def forward(self, x):
            return x * self.f(x)

    class MBV3(nn.Module):  # torchvision's MobileNetV3 block structure, written in PyTorch
        def __init__(self, cin, hid, cout, k, s, se, act):
            super().__init__()
            layers = [cbr(cin, hid, 1, act=act), cbr(hid, hid, k, s, g=hid, act=act)] + ([SE(hid)] if se else [])
            self.f = nn.Sequential(*layers, nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.res = s == 1 and cin == cout

        def forward(self, x):
            return x + self.f(x) if self.res else self.f(x)

    mbv3 = nn.Sequential(cbr(3, 16, 3, 2, act=nn.Hardswish), MBV3(16, 64, 24, 3, 2, False, nn.ReLU),
                         MBV3(24, 72, 24, 3, 1, False, nn.ReLU), MBV3(24, 72, 40, 5, 2, True, nn.ReLU),
                         MBV3(40, 120, 40, 5, 1, True, nn.ReLU), MBV3(40, 240, 80, 3, 2, False, nn.Hardswish),
                         MBV3(80, 200, 80, 3, 1, False, nn.Hardswish), MBV3(80, 480, 112, 3, 1, True, nn.Hardswish),
                         MBV3(112, 672, 160, 5, 2, True, nn.Hardswish), cbr(160, 960, 1, act=nn.Hardswish),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(960, 1280), nn.Hardswish(),
                         nn.Linear(1280, 1000))

    class ConvNeXtBlock(nn.Module):  # ConvNeXt: dw 7x7, LayerNorm, MLP with GELU (ops the zoo lacks)
        def __init__(self, c):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c)
            self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))

        def forward(self, x):
            y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
            return x + y

    convnext = nn.Sequential(nn.Conv2d(3, 64, 4, 4), ConvNeXtBlock(64), ConvNeXtBlock(64), nn.Conv2d(64, 128, 2, 2),
                             ConvNeXtBlock(128), ConvNeXtBlock(128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(128, 1000))
    return {"resnext-torch": resnext, "inceptionv3-c-torch": inception, "unet-torch": UNet(),
            "mobilenetv3-torch": mbv3, "convnext-torch": convnext}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("bench_models_work"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "models-issue14")
    ap.add_argument("--train-per-family", type=int, default=3)
    ap.add_argument("--val-per-family", type=int, default=5)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--val-seed", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--val-rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny models, one round: checks the script only")
    args = ap.parse_args(argv)

    from spaceevo import torch_to_onnx
    from spaceevo.datasets import LatencyStore, load_fusion_rules, save_fusion_rules
    from spaceevo.latency import (ROUND_REPEATS, ROUND_WARMUP, create_backend, default_device, measure_fusion_rules,
                                  model_profile_units, run_profile)
    from spaceevo.predictors import measure_models, train_kernel_predictor, validate_models
    from spaceevo.space import generate_zoo

    w = args.workdir
    w.mkdir(parents=True, exist_ok=True)
    tiny = args.smoke
    res = 32 if tiny else args.resolution
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}
    t0 = time.time()
    for name, seed, n in (("train", args.train_seed, args.train_per_family), ("val", args.val_seed,
                                                                                 args.val_per_family)):
        if not (w / name / "manifest.json").is_file():
            generate_zoo(w / name, "all", n, seed=seed, resolution=res, tiny=tiny)
    be = create_backend("ort", reference=True, warmup=ROUND_WARMUP, repeats=ROUND_REPEATS)
    device = default_device(be)
    db = w / "kernels.db"
    with LatencyStore(db) as st:
        t = time.time()
        rules = load_fusion_rules(st, device, "ort", "int8")
        if rules is None:
            rules = measure_fusion_rules(be, "int8", db=st, rounds=args.rounds, statistic="ratio")
            save_fusion_rules(st, rules)
        log["fusion_rules"] = {k: rules[k] for k in ("conv_acts", "fc_acts", "add_acts", "float_ops", "measured")}
        log["fusion_rules_s"] = round(time.time() - t, 1)
        plan = model_profile_units(w / "train", "ort", "int8", rules)
        t = time.time()
        summary = run_profile(plan["kernels"] + plan["models"], be, ["int8"], db=st, rounds=args.rounds)
        log["profile"] = {"kernels": len(plan["kernels"]), "models": len(plan["models"]),
                          "seconds": round(time.time() - t, 1), "summary": summary}
        df = st.read_measurements(device=device, dtype="int8")
    df = df[df["threads"] == 1]
    preds = {}
    for est in ("lgbm", "rf"):
        t = time.time()
        preds[est] = train_kernel_predictor(df, device, backend="ort", estimator=est, target="norm_ms", rules=rules,
                                            source=str(db), cv_folds=5)
        preds[est].save(w / f"kernels-{est}.pred")
        log[f"train_{est}"] = {"seconds": round(time.time() - t, 1), "metrics": preds[est].manifest["metrics"],
                               "composition": preds[est].composition}
    t = time.time()
    val = validate_models(preds["lgbm"], w / "val", rounds=args.val_rounds, db=w / "val.db")
    log["validate_s"] = round(time.time() - t, 1)
    measured = {r["model"]: r["measured_ms"] for r in val["rows"]}
    log["validate"] = {"lgbm": val, "rf": validate_models(preds["rf"], w / "val", measured=measured)}
    # hand-written PyTorch networks, exported with torch.onnx
    real = []
    try:
        nets = torch_nets()
    except ImportError as exc:
        nets = {}
        log["torch_nets"] = f"skipped: {exc}"
    (w / "torch").mkdir(exist_ok=True)
    shape = (1, 3, 64 if tiny else res, 64 if tiny else res)
    for name, net in nets.items():
        path = w / "torch" / f"{name}.onnx"
        if not path.is_file():
            torch_to_onnx(net, shape, path)
    if nets:
        got = measure_models(w / "torch", "ort", "int8", rounds=args.val_rounds, statistic="norm_ms",
                             reference=preds["lgbm"].reference_ms, db=w / "torch.db", progress=True)
        for name, row in got.items():
            p = preds["lgbm"].predict_model(row["path"])
            real.append({"model": name, "measured_ms": row["ms"], "predicted_ms": p["latency_ms"],
                         "rel_error": (p["latency_ms"] - row["ms"]) / row["ms"], "kernels": len(p["kernels"]),
                         "fallback_kernels": sum(k["source"] == "fallback" for k in p["kernels"]),
                         "unsupported": p["unsupported"], "macs": p["macs"]})
    log["real_world"] = real
    # predict speed: the validation model closest to 100 kernels, detection included
    from spaceevo.latency import detect_kernels

    paths = sorted((w / "val").glob("*.onnx"))
    counts = {p: len(detect_kernels(p, rules=rules).kernels) for p in paths}
    target = min(paths, key=lambda p: abs(counts[p] - 100))
    times = []
    for _ in range(7):
        t = time.perf_counter()
        preds["lgbm"].predict_model(target)
        times.append(time.perf_counter() - t)
    log["predict_speed"] = {"model": target.name, "kernels": counts[target],
                            "median_s": statistics.median(times), "min_s": min(times)}
    log["total_s"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(log, indent=1, default=str))
    (args.out / "table.md").write_text(render(log))
    sys.stdout.write(render(log))
    return log


def render(log: dict) -> str:
    """The summary as Markdown tables."""
    out = ["| predictor | models | +-10% | +-5% | MAPE | Kendall tau |", "|---|---|---|---|---|---|"]
    for est, v in log["validate"].items():
        out.append(f"| {est} | {v['samples']} | {v['acc_10pct']:.1f}% | {v['acc_5pct']:.1f}% | {v['mape']:.2f}% | "
                   f"{v['kendall_tau']:.3f} |")
        raw = v["without_composition"]
        out.append(f"| {est}, plain sum of kernels | {raw['n']} | {raw['acc_10pct']:.1f}% | {raw['acc_5pct']:.1f}% | "
                   f"{raw['mape']:.2f}% | {raw['kendall_tau']:.3f} |")
    out += ["", "| family (lgbm) | n | +-10% | MAPE | Kendall tau |", "|---|---|---|---|---|"]
    for f, m in log["validate"]["lgbm"]["per_family"].items():
        out.append(f"| {f} | {m['n']} | {m['acc_10pct']:.0f}% | {m['mape']:.2f}% | {m['kendall_tau']:.2f} |")
    out += ["", "| PyTorch net | measured ms | predicted ms | error | kernels (fallback) | unsupported |",
            "|---|---|---|---|---|---|"]
    for r in log["real_world"]:
        uns = ", ".join(f"{u['op']} x{u['count']} ({100 * u['macs_share']:.0f}% MACs)" for u in r["unsupported"])
        out.append(f"| {r['model']} | {r['measured_ms']:.3f} | {r['predicted_ms']:.3f} | "
                   f"{100 * r['rel_error']:+.1f}% | {r['kernels']} ({r['fallback_kernels']}) | {uns or '-'} |")
    p = log["profile"]
    s = log["predict_speed"]
    out += ["", f"profile: {p['kernels']} kernels + {p['models']} models whole in {p['seconds'] / 60:.1f} min; "
                f"fusion rules {log['fusion_rules_s']:.0f} s; validation {log['validate_s'] / 60:.1f} min; "
                f"predict of {s['model']} ({s['kernels']} kernels) {1000 * s['median_s']:.0f} ms (median of 7)", ""]
    return "\n".join(out)


if __name__ == "__main__":
    main()
