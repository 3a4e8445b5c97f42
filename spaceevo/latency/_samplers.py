"""Which configurations to measure: ``space``, ``random``, ``prior`` (nn-Meter's) and ``adaptive``.

Every sampler returns a list of units and takes an explicit ``seed``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from spaceevo.registry import Registry
from spaceevo.space import (ACTIVATIONS, BlockConfig, SearchSpace, as_search_space, conv_out_hw, get_hyperspace,
                            published_subnets)

from ._kernel_types import MODEL_KERNELS, VOCAB as MODEL_VOCAB, field_choices
from ._units import BlockUnit, KernelUnit, SubnetUnit, get_kernel, list_kernels, make_kernel

log = logging.getLogger(__name__)

_SAMPLERS: Registry[Callable] = Registry("sampler")


def register_sampler(name: str) -> Callable:
    """Decorator: register a sampler function ``(**opts) -> list[unit]`` under ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    callable
        The decorator; it returns the sampler unchanged.
    """

    def deco(fn: Callable) -> Callable:
        return _SAMPLERS.register(name, fn)

    return deco


def list_samplers(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered samplers, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns; only matching names are listed.

    Returns
    -------
    list of str
    """
    return _SAMPLERS.names(filter)


def get_sampler(name: str) -> Callable:
    """The sampler function called ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    callable
        ``(**opts) -> list of units``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid samplers.
    """
    return _SAMPLERS.get(name)


def _subset(units: list, limit: int | None, fraction: float | None, seed: int) -> list:
    """All units in order, or a seeded random fraction and/or at most ``limit`` of them."""
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1]")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r} must be >= 1")
    if fraction is None and limit is None:
        return units
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(units))
    n = len(units) if fraction is None else max(1, int(round(fraction * len(units))))
    if limit is not None:
        n = min(n, limit)
    return [units[i] for i in sorted(idx[:n])]


# -- space --------------------------------------------------------------------------------------
def _stage_options(space: str):
    """(hyperspace, [(stage, [block choices], widths)]) for a hyperspace name or a search-space encoding."""
    if "-" in space:
        sp = SearchSpace.parse(space)
        return sp.hyperspace, [(st, [c], w) for st, c, w in sp.stage_options()]
    h = get_hyperspace(space)
    opts = [(h.first_conv, [h.first_conv_block], h.first_conv.widths), (h.stage0, [h.stage0_block], h.stage0.widths)]
    return h, opts + [(st, list(h.block_choices), st.widths) for st in h.stages]


def space_block_configs(space: str, resolutions: Sequence[int] | None = None,
                        block_types: Sequence[str] | None = None) -> list[BlockConfig]:
    """Every distinct block configuration that occurs in ``space`` at ``resolutions`` (head included).

    ``space`` is a hyperspace (``onnxw``) or a search space (``onnxw-151122-023231``). A stage's
    first block takes any width of the previous stage as input and the stage stride; the other
    blocks take the stage's own widths with stride 1.

    Parameters
    ----------
    space : str
    resolutions : sequence of int, optional
        Default: the hyperspace's look-up-table resolutions.
    block_types : sequence of str, optional
        Only these block types.

    Returns
    -------
    list of BlockConfig
    """
    key = (space, tuple(resolutions) if resolutions else None, tuple(block_types) if block_types else None)
    return list(_space_block_configs(*key))


def fixed_block_configs(space: str, resolutions: Sequence[int] | None = None) -> list[BlockConfig]:
    """The blocks of ``space`` whose stage has no block-type choice: first conv, stage0 and the head.

    Every subnet of the space needs some of them, so a predictor without them cannot predict any subnet;
    a profile that draws a subset of the space's blocks adds them (see :func:`sample_space`).

    Parameters
    ----------
    space : str
        A hyperspace or search-space name.
    resolutions : sequence of int, optional
        Input resolutions (default: the hyperspace's look-up-table resolutions).

    Returns
    -------
    list of BlockConfig
    """
    return list(_space_block_configs(space, tuple(resolutions) if resolutions else None, None, fixed_only=True))


@lru_cache(maxsize=32)
def _space_block_configs(space: str, resolutions: tuple[int, ...] | None,
                         block_types: tuple[str, ...] | None, fixed_only: bool = False) -> tuple[BlockConfig, ...]:
    h, options = _stage_options(space)
    fixed_stages = (h.first_conv.name, h.stage0.name)
    res = list(resolutions) if resolutions else list(h.lut_resolutions)
    bad = [r for r in res if r not in h.resolutions]
    if bad:
        raise ValueError(f"resolution={bad[0]} is not in {h.name} resolutions {list(h.resolutions)}")
    wanted = set(block_types) if block_types else None
    seen: dict[BlockConfig, None] = {}
    for r in res:
        hw = r
        prev_widths: tuple[int, ...] = (h.in_channels,)
        for stage, choices, widths in options:
            out_hw = conv_out_hw(hw, 3, stage.stride)
            for choice in choices:
                if (wanted and choice.type not in wanted) or (fixed_only and stage.name not in fixed_stages):
                    continue
                positions = [(hw, stage.stride, prev_widths)]
                if max(stage.depths) > 1:
                    positions.append((out_hw, 1, widths))
                for in_hw, stride, cins in positions:
                    for cin in cins:
                        for cout in widths:
                            for k in choice.kernel_sizes:
                                for e in choice.expand_ratios:
                                    seen.setdefault(BlockConfig(choice.type, in_hw, cin, cout, k, e, stride,
                                                                choice.act), None)
            hw, prev_widths = out_hw, widths
        head = [BlockConfig("FinalExpandBlock", hw, cin, h.final_expand_width, 1, 0, 1, h.head_act)
                for cin in prev_widths]
        head.append(BlockConfig("FeatureMixBlock", hw, h.final_expand_width, h.feature_mix_width, 1, 0, 1,
                                h.head_act))
        head.append(BlockConfig("LogitsBlock", 1, h.feature_mix_width, h.n_classes, 1, 0, 1, "relu"))
        for cfg in head:
            if not wanted or cfg.type in wanted:
                seen.setdefault(cfg, None)
    return tuple(seen)


@register_sampler("space")
def sample_space(space: str = "onnxw", resolutions: Sequence[int] | None = None, limit: int | None = None,
                 fraction: float | None = None, seed: int = 0, block_types: Sequence[str] | None = None,
                 kind: str = "block", fixed_blocks: bool = False, **_ignored) -> list[BlockUnit]:
    """Blocks that occur in a hyperspace or search space at the given resolutions; a seeded fraction or limit.

    With ``fixed_blocks`` the space's fixed blocks (:func:`fixed_block_configs`: first conv, stage0, head)
    that the subset lacks are added after it, so a predictor trained on the subset can predict whole subnets.
    """
    if kind != "block":
        raise ValueError(f"sampler 'space' draws blocks; kind={kind!r} is not allowed (use kind='block')")
    configs = space_block_configs(space, resolutions, block_types)
    log.info("%d distinct block configurations in %s at %s", len(configs), space, resolutions)
    chosen = _subset(configs, limit, fraction, seed)
    if fixed_blocks:
        have = set(chosen)
        chosen += [c for c in fixed_block_configs(space, resolutions) if c not in have]
    return [BlockUnit(c) for c in chosen]


# -- subnets (what a predictor of whole subnets needs) ----------------------------------------------
def random_subnets(space: str, n: int, resolutions: Sequence[int] | None = None, seed: int = 0) -> list[tuple]:
    """``n`` random ``(SearchSpace, Subnet)`` pairs of a search space, or of a hyperspace's random search spaces.

    Parameters
    ----------
    space : str
        A search space (``onnxw-151122-023231``) or a hyperspace (``onnxw``: each subnet comes from a search
        space drawn uniformly, block type and width window per stage).
    n : int
        Number of subnets (>= 0).
    resolutions : sequence of int, optional
        The i-th subnet takes ``resolutions[i % len(resolutions)]``; default: the resolution it was drawn with.
    seed : int
        Seed of the draws.

    Returns
    -------
    list of (SearchSpace, Subnet)
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"subnets={n!r} must be an integer >= 0")
    h, _ = _stage_options(space)
    res = list(resolutions or [])
    bad = [r for r in res if r not in h.resolutions]
    if bad:
        raise ValueError(f"resolution={bad[0]} is not in {h.name} resolutions {list(h.resolutions)}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if "-" in space:
            sp = SearchSpace.parse(space)
        else:
            sp = SearchSpace(h, tuple(int(rng.integers(len(h.block_choices))) for _ in h.stages),
                             tuple(int(rng.integers(st.n_windows)) for st in h.stages))
        sub = sp.sample(1, seed=rng)[0]
        if res:
            sub = dataclasses.replace(sub, resolution=res[i % len(res)])
        out.append((sp, sub))
    return out


def subnet_profile_units(space: str, n: int, resolutions: Sequence[int] | None = None, seed: int = 0,
                         published: Sequence[tuple] = ()) -> list:
    """What ``spaceevo profile --subnets N [--published]`` times: a predictor of whole subnets' units.

    The blocks of ``n`` :func:`random_subnets` of ``space`` and of the ``published`` ``(space, subnet)`` pairs,
    the space's fixed blocks at the random subnets' resolutions, then the ``n`` subnets whole.

    Parameters
    ----------
    space : str
        A search space.
    n : int
        Random subnets.
    resolutions : sequence of int, optional
    seed : int
    published : sequence of (space, subnet)
        Subnets whose blocks are timed too (not whole).

    Returns
    -------
    list of Unit
    """
    whole = random_subnets(space, n, resolutions, seed=seed)
    res = sorted({sub.resolution for _sp, sub in whole}) or resolutions
    fixed = fixed_block_configs(space, res) if res else []
    return subnet_units(whole, published, extra_blocks=fixed)


def subnet_units(whole: Sequence[tuple], blocks_of: Sequence[tuple] = (),
                 extra_blocks: Sequence[BlockConfig] = ()) -> list:
    """Units for a predictor of whole subnets: every distinct block of the given subnets, then ``whole`` whole.

    Parameters
    ----------
    whole : sequence of (space, subnet)
        Subnets timed block by block *and* as whole models (the composition term learns from them).
        ``space`` is a ``SearchSpace`` or its encoding, ``subnet`` a ``Subnet`` or its encoding.
    blocks_of : sequence of (space, subnet)
        Subnets whose blocks only are timed (held-out subnets, the published SpaceEvo subnets).
    extra_blocks : sequence of BlockConfig
        More blocks to time (the space's fixed blocks), after the subnets' own.

    Returns
    -------
    list
        ``BlockUnit`` of each distinct block (first seen first), then one ``SubnetUnit`` per ``whole`` item.
    """
    def parsed(items):
        for sp, sub in items:
            sp = as_search_space(sp)
            yield sp, (sp.parse_subnet(sub) if isinstance(sub, str) else sp.validate(sub))

    whole = list(parsed(whole))
    blocks: dict[BlockConfig, None] = {}
    for sp, sub in whole + list(parsed(blocks_of)):
        for b in sp.blocks(sub):
            blocks.setdefault(b.config, None)
    for cfg in extra_blocks:
        blocks.setdefault(cfg, None)
    seen: dict[str, SubnetUnit] = {}
    for sp, sub in whole:
        u = SubnetUnit(str(sp), str(sub))
        seen.setdefault(u.key, u)
    return [BlockUnit(c) for c in blocks] + list(seen.values())


# -- random -------------------------------------------------------------------------------------
DEFAULT_RANGES: dict[str, tuple[int, int]] = {"hw": (4, 112), "cin": (8, 512), "cout": (8, 512)}


def _random_block(rng: np.random.Generator, h, ranges: dict) -> BlockConfig:
    choice = h.block_choices[rng.integers(len(h.block_choices))]
    hw = int(rng.integers(ranges["hw"][0], ranges["hw"][1] + 1))
    cin = int(rng.integers(ranges["cin"][0] // 8, ranges["cin"][1] // 8 + 1)) * 8
    cout = int(rng.integers(ranges["cout"][0] // 8, ranges["cout"][1] // 8 + 1)) * 8
    k = int(rng.choice(choice.kernel_sizes))
    e = float(rng.choice(choice.expand_ratios))
    stride = int(rng.choice([1, 2]))
    return BlockConfig(choice.type, hw, cin, cout, k, e, stride, choice.act)


def _random_kernel(rng: np.random.Generator, name: str, ranges: dict) -> KernelUnit:
    kt = get_kernel(name)
    cfg = {}
    for f in kt.fields:
        if kt.check is not None and f in MODEL_VOCAB:  # the model kernel types' categorical fields
            cfg[f] = str(rng.choice(field_choices(name, f)))
        elif kt.check is not None and f in ("groups", "n", "mid", "scale", "p", "kw"):
            small = {"groups": 1, "kw": 0, "mid": int(rng.integers(8, 65))}  # kw 0: a square kernel
            cfg[f] = small.get(f, int(rng.integers(1, 4)))
        elif f == "act":
            cfg[f] = str(rng.choice(["relu", "relu6", "hswish", "swish"] if "relu6" in ACTIVATIONS else ACTIVATIONS))
        elif f == "k":
            cfg[f] = int(rng.choice([1, 3, 5, 7] if name.endswith("conv-bn-act") else [2 * i + 1 for i in (1, 2)]))
        elif f == "stride":
            cfg[f] = int(rng.choice([1, 2]))
        elif f in ("cin", "cout", "cin2"):
            lo, hi = ranges["cin" if f == "cin2" else f]
            cfg[f] = int(rng.integers(lo // 8, hi // 8 + 1)) * 8
        else:
            lo, hi = ranges[f]
            cfg[f] = int(rng.integers(lo, hi + 1))
    return KernelUnit(name, cfg)


@register_sampler("random")
def sample_random(limit: int | None = 100, seed: int = 0, space: str = "onnxw", kind: str = "block",
                  kernels: Sequence[str] | None = None, ranges: dict | None = None, **_ignored) -> list:
    """``limit`` configs uniform over declared ranges: blocks of ``space``'s block types, or kernels."""
    n = 100 if limit is None else limit
    if n < 1:
        raise ValueError(f"limit={n!r} must be >= 1")
    r = {**DEFAULT_RANGES, **(ranges or {})}
    for key, value in r.items():
        if key not in DEFAULT_RANGES or len(value) != 2 or not 1 <= value[0] <= value[1]:
            raise ValueError(f"ranges[{key!r}]={value!r}: keys {sorted(DEFAULT_RANGES)}, each (low, high) "
                             "with 1 <= low <= high")
    rng = np.random.default_rng(seed)
    if kind == "block":
        h = get_hyperspace(space)
        return [BlockUnit(_random_block(rng, h, r)) for _ in range(n)]
    if kind == "kernel":
        names = list(kernels) if kernels else [k for k in list_kernels() if get_kernel(k).check is None]
        for name in names:
            get_kernel(name)
        return [_random_kernel(rng, names[rng.integers(len(names))], r) for _ in range(n)]
    raise ValueError(f"kind={kind!r} is not in ['block', 'kernel']")


# -- prior (nn-Meter's model-zoo distributions) ---------------------------------------------------
PRIOR_KERNELS: dict[str, str] = {"conv-bn-act": "conv.csv", "dwconv-bn-act": "dwconv.csv", "fc": "fc.csv"}
_HW_CHOICES = (1, 3, 7, 8, 13, 14, 27, 28, 32, 56, 112, 224)


def prior_table(kernel: str):
    """nn-Meter's table of real-model configurations for ``kernel`` (conv, dwconv or fc) as a DataFrame."""
    import pandas as pd

    if kernel not in PRIOR_KERNELS:
        raise ValueError(f"kernel={kernel!r} has no prior; kernels with a prior: {sorted(PRIOR_KERNELS)}")
    spec = importlib.util.find_spec("nn_meter")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'prior' sampler reads nn-Meter's configuration tables: pip install nn-meter")
    path = (Path(list(spec.submodule_search_locations)[0]) / "builder" / "kernel_predictor_builder" /
            "data_sampler" / "prior_config_lib" / PRIOR_KERNELS[kernel])
    if not path.is_file():
        raise FileNotFoundError(f"nn-Meter's prior table {path} is missing")
    return pd.read_csv(path)


def _inverse_cdf(values: np.ndarray, n: int, rng: np.random.Generator, bins: int = 40) -> np.ndarray:
    """``n`` draws from the histogram density of ``values`` (inverse-transform sampling)."""
    hist, edges = np.histogram(values, bins=bins, density=True)
    cdf = np.concatenate([[0.0], np.cumsum(hist * np.diff(edges))])
    return np.interp(rng.random(n), cdf, edges)


def _snap(values: np.ndarray, choices: Sequence[int]) -> list[int]:
    c = np.asarray(choices)
    return [int(c[np.abs(c - v).argmin()]) for v in values]


# model kernel types (``MODEL_KERNELS``) with an nn-Meter table of their own
PRIOR_MODEL_KERNELS: dict[str, str] = {"conv": "conv-bn-act", "dwconv": "dwconv-bn-act", "linear": "fc"}


def _draw_prior(t, m: int, rng: np.random.Generator, spatial: bool, cout: bool) -> dict:
    """``m`` draws of each column of an nn-Meter table: cin; hw, k, stride when ``spatial``; cout when ``cout``
    (else cout = cin), in that order."""
    def ints(col: str) -> np.ndarray:
        return np.maximum(1, np.round(_inverse_cdf(t[col].to_numpy(float), m, rng))).astype(int)

    d = {"cin": ints("cin")}
    if spatial:
        d["hw"] = _snap(_inverse_cdf(t["input_h"].to_numpy(float), m, rng), _HW_CHOICES)
        d["k"] = _snap(_inverse_cdf(t["ks"].to_numpy(float), m, rng), (1, 3, 5, 7))
        d["stride"] = _snap(_inverse_cdf(t["stride"].to_numpy(float), m, rng), (1, 2))
    d["cout"] = ints("cout") if cout else d["cin"]
    return d


def _model_kernel_units(name: str, d: dict, act: str) -> list[KernelUnit]:
    """nn-Meter-table draws (:func:`_draw_prior`) as units of the detector's kernel types (conv, dwconv, linear)."""
    act = act if act in field_choices(name, "act") else "none"
    if name == "linear":
        return [make_kernel("linear", cin=int(a), cout=int(b), act="none") for a, b in zip(d["cin"], d["cout"])]
    rows = zip(d["hw"], d["cin"], d["cout"], d["k"], d["stride"])
    if name == "conv":
        return [make_kernel("conv", hw=h_, cin=int(a), cout=int(b), k=k_, kw=k_, stride=s_, groups=1, act=act)
                for h_, a, b, k_, s_ in rows]
    return [make_kernel("dwconv", hw=h_, cin=int(a), cout=int(a), k=k_, kw=k_, stride=s_, groups=int(a), act=act)
            for h_, a, _b, k_, s_ in rows]


@register_sampler("prior")
def sample_prior(limit: int | None = 100, seed: int = 0, kernels: Sequence[str] | None = None, kind: str = "kernel",
                 act: str = "relu", **opts) -> list[KernelUnit]:
    """Kernels drawn from the configurations of real models.

    The collector's ``conv-bn-act``, ``dwconv-bn-act`` and ``fc`` kernels (the default) and the detector's
    ``conv``, ``dwconv`` and ``linear`` kernel types follow nn-Meter's distributions of its model zoo; any
    other kernel type of ``MODEL_KERNELS`` (SE, pooling, concat, shuffle, ...) is drawn from the kernels of
    random models of the 14 zoo families (the ``zoo`` sampler). ``limit`` is shared evenly at random.
    """
    if kind != "kernel":
        raise ValueError(f"sampler 'prior' draws kernels; kind={kind!r} is not allowed (use kind='kernel')")
    n = 100 if limit is None else limit
    if n < 1:
        raise ValueError(f"limit={n!r} must be >= 1")
    names = list(kernels) if kernels else list(PRIOR_KERNELS)
    unknown = [k for k in names if k not in PRIOR_KERNELS and k not in MODEL_KERNELS]
    if unknown:
        raise ValueError(f"kernel={unknown[0]!r} has no prior; kernels with a prior: {sorted(PRIOR_KERNELS)} "
                         f"(nn-Meter's collector kernels) or the detector's kernel types {list(MODEL_KERNELS)}")
    rng = np.random.default_rng(seed)
    per = np.bincount(rng.integers(len(names), size=n), minlength=len(names))
    out: list[KernelUnit] = []
    zoo_types = [name for name in names if name in MODEL_KERNELS and name not in PRIOR_MODEL_KERNELS]
    zoo_n = int(sum(m for name, m in zip(names, per) if name in zoo_types))
    if zoo_n:
        out += get_sampler("zoo")(limit=zoo_n, seed=seed, kernels=zoo_types, **opts)
    for name, m in zip(names, per):
        if m == 0 or name in zoo_types:
            continue
        d = _draw_prior(prior_table(PRIOR_MODEL_KERNELS.get(name, name)), m, rng, spatial=name not in ("fc", "linear"),
                        cout=name in ("fc", "linear", "conv-bn-act", "conv"))
        if name in PRIOR_MODEL_KERNELS:
            out += _model_kernel_units(name, d, act)
        elif name == "fc":
            out += [KernelUnit(name, {"cin": int(a), "cout": int(b)}) for a, b in zip(d["cin"], d["cout"])]
        elif name == "conv-bn-act":
            out += [KernelUnit(name, {"hw": h_, "cin": int(a), "cout": int(b), "k": k_, "stride": s_, "act": act})
                    for h_, a, b, k_, s_ in zip(d["hw"], d["cin"], d["cout"], d["k"], d["stride"])]
        else:
            out += [KernelUnit(name, {"hw": h_, "cin": int(a), "k": k_, "stride": s_, "act": act})
                    for h_, a, k_, s_ in zip(d["hw"], d["cin"], d["k"], d["stride"])]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


# -- adaptive (nn-Meter's fine-grained sampling around the worst predictions) ----------------------
def _measured(df, predictor) -> np.ndarray:
    """The rows' latency in the statistic the predictor learned (``norm_ms``: ratio x its reference time)."""
    target = getattr(predictor, "target", "median_ms")
    if target == "norm_ms":
        if "ratio" not in df.columns or df["ratio"].isna().any():
            raise ValueError("sampler 'adaptive': the predictor learned norm_ms but the dataset's rows lack a "
                             "ratio (profile with --reference)")
        return df["ratio"].to_numpy(float) * float(predictor.reference_ms)
    if target not in df.columns:
        raise ValueError(f"sampler 'adaptive': the dataset lacks the predictor's target column {target!r}")
    return df[target].to_numpy(float)


@register_sampler("adaptive")
def sample_adaptive(measurements=None, predictor=None, limit: int | None = 100, seed: int = 0, top: int = 10,
                    spread: tuple[float, float] = (0.5, 1.2), **_ignored) -> list[BlockUnit]:
    """New block configs around the ``top`` measured blocks with the largest relative prediction error.

    ``measurements``: a DataFrame of ok block rows (the store's format); ``predictor``: any object with
    ``predict_blocks(configs) -> array of ms``. Around each worst config, cin and cout are redrawn in
    ``[spread[0] * c, spread[1] * c]`` (multiples of 8), other fields kept, as nn-Meter's fine-grained
    sampler does.
    """
    if measurements is None or predictor is None:
        raise ValueError("sampler 'adaptive' needs a dataset (--db) and a trained predictor (--predictor)")
    if not hasattr(predictor, "predict_blocks"):
        raise ValueError(f"predictor {type(predictor).__name__} has no predict_blocks(configs)")
    n = 100 if limit is None else limit
    df = measurements[(measurements["kind"] == "block") & (measurements["status"] == "ok")]
    if df.empty:
        raise ValueError("sampler 'adaptive': the dataset has no ok block rows to learn from")
    configs = [BlockConfig.parse(k) for k in df["key"]]
    pred = np.asarray(predictor.predict_blocks(configs), dtype=float)
    y = _measured(df, predictor)
    rel = np.abs(pred - y) / np.maximum(y, 1e-9)
    worst = np.argsort(-rel)[:max(1, top)]
    known = set(df["key"])
    rng = np.random.default_rng(seed)
    out: dict[str, BlockUnit] = {}
    per = max(1, -(-n // len(worst)))
    lo, hi = spread
    for tries in range(50):
        for i in worst:
            c = configs[i]
            for _ in range(per):
                cin = max(8, int(rng.uniform(lo * c.cin, hi * c.cin) // 8 * 8))
                cout = max(8, int(rng.uniform(lo * c.cout, hi * c.cout) // 8 * 8))
                try:
                    u = BlockUnit(BlockConfig(c.type, c.hw, cin, cout, c.k, c.e, c.stride, c.act))
                except ValueError:
                    continue
                if u.key not in known:
                    out.setdefault(u.key, u)
        if len(out) >= n:
            break
    units = list(out.values())
    return [units[i] for i in sorted(rng.permutation(len(units))[:n])]


def plan_units(space: str, sampler: str = "space", sample_opts: dict | None = None, subnets: int = 0,
               published: bool = False, published_file: str | Path | None = None,
               note: Callable[[str], object] | None = None) -> list:
    """The units of a profiling run: what ``spaceevo profile`` chooses from its sampler and subnet options.

    Without ``subnets`` and ``published`` it is the sampler's units. Otherwise it is
    :func:`subnet_profile_units` (the blocks of ``subnets`` random subnets of ``space`` and of the published
    subnets, then those subnets whole), topped up with the sampler's units when ``sample_opts`` has a
    ``limit`` or ``fraction``.

    Parameters
    ----------
    space : str
        Hyperspace or search space.
    sampler : str
        A registered sampler.
    sample_opts : dict, optional
        The sampler's options (``resolutions``, ``limit``, ``fraction``, ``seed``, ``kind``, ...).
    subnets : int
        Random subnets to time whole (and by blocks).
    published : bool
        Also time the blocks of the published SpaceEvo subnets of ``space``'s hyperspace.
    published_file : str or Path, optional
        Their ``search_result.yaml`` (see ``spaceevo.space.published_subnets``).
    note : callable, optional
        Receives one line per choice worth telling (block counts).

    Returns
    -------
    list of Unit

    Raises
    ------
    ValueError
        ``subnets``/``published`` with a sampler other than ``space`` or a kind other than ``block``, a negative
        ``subnets``, or a bad sampler option.
    """
    opts = dict(sample_opts or {})
    say = note or (lambda _text: None)
    resolutions, seed, kind = opts.get("resolutions"), opts.get("seed", 0), opts.get("kind", "block")
    if sampler == "space":
        say(f"{len(space_block_configs(space, resolutions))} distinct block configurations in {space} at "
            f"{resolutions or 'LUT resolutions'}\n")
    if not (subnets or published):
        return get_sampler(sampler)(**opts)
    if sampler != "space" or kind != "block":
        raise ValueError(f"--subnets/--published time blocks and whole subnets of --space; they do not combine with "
                         f"--sampler {sampler!r} --kind {kind!r} (use the default --sampler space --kind block)")
    if subnets < 0:
        raise ValueError(f"--subnets {subnets} must be >= 0")
    pub = published_subnets(published_file, hyperspace=space.split("-", 1)[0]) if published else []
    units = subnet_profile_units(space, subnets, resolutions, seed=seed,
                                 published=[(p["space"], p["subnet"]) for p in pub])
    n_blocks = sum(u.kind == "block" for u in units)
    say(f"{n_blocks} blocks of {subnets} random subnets of {space} (fixed blocks included)"
        + (f" and {len(pub)} published subnets" if published else "") + f", {subnets} subnets whole\n")
    if opts.get("limit") is not None or opts.get("fraction") is not None:
        have = {u.key for u in units}
        units += [u for u in get_sampler(sampler)(**opts) if u.key not in have]
    return units


from . import _zoo_sampler  # noqa: E402,F401  (registers the "zoo" sampler: kernels of the model zoo's families)
