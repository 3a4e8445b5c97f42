"""Supernet training throughput (FP32 vs LSQ+ QAT) and predicted vs measured INT8 latency of extracted subnets.

Run from the repository root (one thread, as the latency collector times)::

    OMP_NUM_THREADS=1 python benchmarks/bench_supernet.py [--space onnxw-000000-000000] [--checkpoint CK]

Prints, from one run: images/s of sandwich-rule steps (max + min + ``n_random`` random subnets per
step, forward and backward) in FP32 and with LSQ+ fake quantisation, on the digits data at
``--image-size``; then, for the min, max and a few random subnets, the INT8 latency predicted by
``--predictor`` and the INT8 latency measured by the collector (``spaceevo.latency`` ort backend:
collector quantisation, one thread, median of the timed samples) at the subnet's resolution, with
their ratio. Weights come from ``--checkpoint`` when given, else a freshly initialised supernet
(latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spaceevo.predictors import load_predictor
from spaceevo.latency import create_backend
from spaceevo.search.supernet import (Supernet, export_onnx, load_dataset, load_supernet, measure_latency_ms,
                                      subnet_blocks)
from spaceevo.search.supernet._train import SandwichLoss, calibrate_quantizers


def throughput(net: Supernet, x: torch.Tensor, y: torch.Tensor, steps: int, n_random: int, seed: int) -> float:
    """Images per second of sandwich steps (forward, backward, SGD update)."""
    loss_fn = SandwichLoss(net).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    rng = np.random.default_rng(seed)

    def step() -> None:
        subs = [net.max_subnet(), net.min_subnet()] + [net.sample(rng) for _ in range(n_random)]
        loss, _ = loss_fn(x, y, subs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="onnxw-000000-000000")
    ap.add_argument("--checkpoint", default=None, help="supernet.pt (its space replaces --space)")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--n-random", type=int, default=1)
    ap.add_argument("--subnets", type=int, default=3, help="random subnets besides min and max")
    ap.add_argument("--predictor", default="vnni-ort-int8")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    net = load_supernet(args.checkpoint)[0] if args.checkpoint else Supernet(args.space, n_classes=10)
    net = Supernet(str(net.space), n_classes=net.n_classes) if net.qat else net  # FP32 first
    data = load_dataset("digits", args.image_size)
    x, y = data.train.images[:args.batch_size], data.train.labels[:args.batch_size]
    fp32 = throughput(net, x, y, args.steps, args.n_random, args.seed)
    net.enable_qat()
    calibrate_quantizers(net, x, args.seed)
    qat = throughput(net, x, y, args.steps, args.n_random, args.seed)
    print(f"space {net.space}  image {args.image_size}px  batch {args.batch_size}  subnets/step {2 + args.n_random}  "
          f"threads {torch.get_num_threads()}")
    print(f"training throughput: FP32 {fp32:.1f} images/s, LSQ+ QAT {qat:.1f} images/s "
          f"(QAT/FP32 {qat / fp32:.2f})")

    if args.checkpoint:
        net = load_supernet(args.checkpoint)[0]
    pred = load_predictor(args.predictor)
    backend = create_backend("ort", threads=1, repeats=args.repeats)
    subs = [net.min_subnet(), net.max_subnet()] + net.space.sample(args.subnets, args.seed)
    names = ["min", "max"] + [f"rand{i}" for i in range(args.subnets)]
    print(f"\nINT8 latency (ms) at the subnet's resolution: predicted ({args.predictor}) vs measured "
          f"(collector ort backend, 1 thread, {args.repeats} samples)")
    print(f"{'subnet':7} {'res':>4} {'MMACs':>8} {'pred':>8} {'meas':>8} {'cv':>6} {'pred/meas':>9}")
    ratios, preds, meas = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sub in zip(names, subs):
            static = net.extract(sub).eval()
            path = export_onnx(static, Path(tmp) / f"{name}.onnx")
            stats = measure_latency_ms(path, backend)
            p = pred.predict_network([b.config for b in subnet_blocks(net.space, sub, net.n_classes)])
            ratios.append(p / stats["median_ms"])
            preds.append(p)
            meas.append(stats["median_ms"])
            print(f"{name:7} {sub.resolution:>4} {net.space.subnet_info(sub)['flops_m']:>8.1f} {p:>8.2f} "
                  f"{stats['median_ms']:>8.2f} {stats['cv']:>6.3f} {ratios[-1]:>9.2f}")
    rank_p, rank_m = np.argsort(np.argsort(preds)), np.argsort(np.argsort(meas))
    spearman = float(np.corrcoef(rank_p, rank_m)[0, 1]) if len(preds) > 2 else float("nan")
    print(f"pred/meas: mean {np.mean(ratios):.2f}, min {np.min(ratios):.2f}, max {np.max(ratios):.2f}; "
          f"Spearman rank correlation {spearman:.2f} ({len(preds)} subnets)")


if __name__ == "__main__":
    main()
