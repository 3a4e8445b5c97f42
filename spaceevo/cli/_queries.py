"""The table queries of the command line, free of typer: ``predict SUBNET`` and ``qt-score``.

Both the typer commands and the fast path (``_fast``) call these, so the two give the same output.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._output import emit, table


def _parse_block(text: str):
    from spaceevo.space import BlockConfig

    try:
        return BlockConfig.parse(text)
    except TypeError as exc:  # a field is missing
        raise ValueError(f"--block {text!r} must look like 'MobileNetV2ResBlock hw=112 cin=16 cout=32 k=3 e=4 s=2 "
                         f"act=relu6' ({exc})") from None


def predict_block(block: str, predictor: str, as_json: bool) -> None:
    """``spaceevo predict --block B --predictor P``: the compiled look-up part, else the predictor's model."""
    from spaceevo.predictors import predict_block_cached, predictor_path

    predictor_path(predictor)  # a missing predictor is the first error, as when it was loaded first
    cfg = _parse_block(block)
    lat, src = predict_block_cached(predictor, cfg)
    data = {**cfg.as_dict(), "block": cfg.to_string(), "latency_ms": lat, "source": src}
    emit(data, as_json, lambda d: sys.stdout.write(f"{d['block']}: {d['latency_ms']:.4f} ms ({d['source']})\n"))


def predict_subnet(subnet: str, space: str, predictor: str, as_json: bool) -> None:
    """``spaceevo predict SUBNET --space S --predictor P``: from the compiled (predictor, space) table."""
    from spaceevo.predictors import compiled_subnet_table

    compiled = compiled_subnet_table(predictor, space)
    data = compiled.predict_subnet(subnet)
    data["warnings"] = list(compiled.warnings)  # the predictor's manifest warnings, as the model path reports them
    if not as_json:
        for w in compiled.warnings:
            sys.stderr.write(f"warning: {w}\n")

    def render(d):
        table(f"{d['subnet']}: {d['latency_ms']:.3f} ms (blocks sum {d['blocks_sum_ms']:.3f} ms; "
              f"{d['n_extrapolated']} extrapolated blocks, {d['extrapolated_ms']:.3f} ms)",
              ["stage", "block", "hw", "cin", "cout", "k", "e", "s", "latency (ms)", "source"],
              [[b["stage"], b["type"], b["hw"], b["cin"], b["cout"], b["k"], f"{b['e']:g}", b["stride"],
                f"{b['latency_ms']:.4f}", b["source"] + (" (extrapolated)" if b["extrapolated"] else "")]
               for b in d["blocks"]])
    emit(data, as_json, render)


def _warn(msg: str) -> None:
    sys.stderr.write(f"warning: {msg}\n")


def _tables(lut_dir: Path, hyperspace: str, predictor: str | None, latency: str | None):
    from spaceevo.search import QTTables, cache_dir_default

    if latency is None:
        latency = "predictor" if predictor is not None else "table"
    if latency not in ("table", "predictor"):
        raise ValueError(f"--latency {latency!r} is not one of 'table', 'predictor'")
    if latency == "predictor" and predictor is None:
        raise ValueError("--latency predictor needs --predictor NAME_OR_FILE")
    pred = None
    if predictor is not None:
        from spaceevo.predictors import load_predictor

        pred = load_predictor(predictor)
    return QTTables.load(lut_dir, hyperspace, predictor=pred, fixed_predictor=pred, cache_dir=cache_dir_default(),
                         latency=latency)


def _space(text: str):
    from spaceevo.space import SearchSpace

    return SearchSpace.parse(text)


def _check_constraints(constraint: list[float] | None) -> list[float]:
    if not constraint:
        raise ValueError("--constraint is required (latency in ms; repeat it for several constraints)")
    for c in constraint:
        if not c > 0:
            raise ValueError(f"--constraint {c} must be a positive latency in ms")
    return list(constraint)


def qt_score(space: str, lut_dir: Path, constraint: list[float] | None, predictor: str | None, latency: str | None,
             samples: int, seed: int, repeats: int, as_json: bool) -> None:
    """``spaceevo qt-score``: the Q-T score of a space; the look-up tables come compiled from the cache when warm."""
    from spaceevo.search import qt_score as score, qt_score_error

    sp = _space(space)
    cons = _check_constraints(constraint)
    if samples < 1:
        raise ValueError(f"--samples {samples} must be >= 1")
    tabs = _tables(lut_dir, sp.hyperspace.name, predictor, latency)
    res = score(sp, tabs, cons, samples, seed, warn=False)
    for c in res.constraints:
        if c.below_min_latency:
            _warn(f"constraint {c.constraint_ms:g} ms is below the fastest subnet of {sp} "
                  f"({res.min_latency_ms:.3f} ms); no sample meets it and score_T = 1/(penalty*1e5) = {c.score:.3g}")
    out = res.to_dict()
    out["latency_source"] = tabs.latency_source
    out["fixed_source"] = tabs.fixed_source
    out["fixed_stages"] = "first_conv + stage0 (depth 1, smallest widths) + feature_mix + logits; " \
                          "final_expand per sample (folded into stage6 rows)"
    if repeats > 1:
        err = qt_score_error(sp, tabs, cons, samples, range(seed, seed + repeats))
        out["score_std"], out["score_rel_std"], out["score_mean"] = err["std"], err["rel_std"], err["mean"]
    emit(out, as_json, _render_score)


def _render_score(d: dict) -> None:
    rows = [[f"{c['constraint_ms']:g}", f"{c['score']:.5f}", f"{c['latency_penalty']:.4f}", f"{c['top_loss']:.4f}",
             f"{c['p_feasible']:.5f}", c["n_feasible"]] for c in d["constraints"]]
    table(f"Q-T score of {d['space']}: {d['score']:.5f}  ({d['n_samples']} samples, seed {d['seed']}, "
          f"latency from {d['latency_source']})",
          ["T (ms)", "score_T", "latency penalty", "top loss", "p feasible", "n feasible"], rows)
    extra = f"subnet latency {d['min_latency_ms']:.3f} .. {d['max_latency_ms']:.3f} ms"
    if "score_std" in d:
        extra += f"; sampling error: std {d['score_std']:.5f} ({100 * d['score_rel_std']:.2f}%)"
    sys.stdout.write(extra + "\n")


