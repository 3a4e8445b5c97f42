"""Whole-process speed of the command line's table queries, as ratios against ``python -c "import numpy"``.

Issue 17's goals (warm: the compiled cache under ``$SPACEEVO_HOME`` already built):

* ``spaceevo predict SUBNET --space S --predictor vnni-ort-int8``: <= 2x the bare NumPy import;
* ``spaceevo qt-score S --lut-dir DIR --constraint 15``: <= 3x;
* ``spaceevo --help``: <= 1.5x.

Each case runs alternately with the yardstick (A B A B ...) after one untimed warm-up pair; the ratio is
taken pair by pair (so drifting machine speed cancels) and the median is reported, with min and max. The
first calls, which build the caches in a fresh ``$SPACEEVO_HOME``, are timed once each. The package's
bytecode is written first (``--no-compile`` skips it), as an installed package has it. Run::

    python benchmarks/bench_cli.py [--runs 15] [--lut-dir ../shared/data/spaceevo/block_lut]
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = "onnxw-151122-023231"
SEQNET = ("d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240#240#320_"
          "e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160")
GOALS = {"help": 1.5, "predict": 2.0, "qt-score": 3.0}


def _spaceevo() -> list[str]:
    script = Path(sys.executable).parent / "spaceevo"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "spaceevo"]


def _wall(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode()[-500:]}")
    return wall


PACKAGES = ("spaceevo", "spaceevo.cli", "spaceevo.space", "spaceevo.latency", "spaceevo.datasets", "spaceevo.predictors",
            "spaceevo.search")


def compile_sources() -> None:
    """Write the package's bytecode, as installing a wheel does (an editable install under
    ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every module from source in every process)."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, maxlevels=0, quiet=1)


def paired(a: list[str], b: list[str], runs: int, env: dict) -> dict:
    """Median, min and max of A's wall time, B's, and of the pairwise ratio A/B."""
    _wall(a, env), _wall(b, env)
    ta, tb = [], []
    for _ in range(runs):
        ta.append(_wall(a, env))
        tb.append(_wall(b, env))
    ratios = [x / y for x, y in zip(ta, tb)]
    return {"a_s": statistics.median(ta), "b_s": statistics.median(tb), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main() -> None:
    """Run the benchmark and print the ratios."""
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="timed pairs per case")
    ap.add_argument("--lut-dir", default=str(here.parent / "shared" / "data" / "spaceevo" / "block_lut"))
    ap.add_argument("--predictor", default="vnni-ort-int8")
    ap.add_argument("--no-compile", action="store_true", help="do not write the package's bytecode first")
    args = ap.parse_args()
    if not args.no_compile:
        compile_sources()

    home = Path(tempfile.mkdtemp(prefix="spaceevo-bench-home-"))
    env = {**os.environ, "SPACEEVO_HOME": str(home)}
    env.pop("SPACEEVO_NO_CACHE", None)
    exe = _spaceevo()
    numpy = [sys.executable, "-c", "import numpy"]
    cases = {"help": exe + ["--help"],
             "predict": exe + ["predict", SEQNET, "--space", SPACE, "--predictor", args.predictor]}
    if (Path(args.lut_dir) / "onnxw").is_dir():
        cases["qt-score"] = exe + ["qt-score", SPACE, "--lut-dir", args.lut_dir, "--constraint", "15"]
    else:
        print(f"(no look-up tables at {args.lut_dir}: qt-score skipped)")
    try:
        print("first calls (fresh $SPACEEVO_HOME: compile the caches)")
        for name in ("predict", "qt-score"):
            if name in cases:
                print(f"  {name:10s} {_wall(cases[name], env):7.2f} s")
        print(f"\nwarm, {args.runs} alternating pairs; ratio = whole process / python -c 'import numpy'")
        print(f"  {'case':10s} {'median s':>9s} {'numpy s':>8s} {'ratio':>7s} {'min':>6s} {'max':>6s}  goal")
        for name, cmd in cases.items():
            r = paired(cmd, numpy, args.runs, env)
            ok = "met" if r["ratio"] <= GOALS[name] else "MISSED"
            print(f"  {name:10s} {r['a_s']:9.3f} {r['b_s']:8.3f} {r['ratio']:7.2f} {r['ratio_min']:6.2f} "
                  f"{r['ratio_max']:6.2f}  <= {GOALS[name]}x {ok}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
