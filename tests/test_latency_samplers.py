"""Samplers: space enumeration (checked against real subnets), random, nn-Meter prior, adaptive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spaceevo.latency import BlockUnit, KernelUnit
from spaceevo.latency._samplers import (
    get_sampler,
    list_samplers,
    prior_table,
    sample_adaptive,
    sample_prior,
    sample_random,
    sample_space,
    space_block_configs,
)
from spaceevo.space import BlockConfig, SearchSpace


def test_registry():
    assert list_samplers() == ["adaptive", "prior", "random", "space", "zoo"]
    with pytest.raises(ValueError, match="unknown sampler 'grid'; valid samplers: adaptive, prior, random, space, zoo"):
        get_sampler("grid")


@pytest.fixture(scope="module")
def onnxw160() -> set[BlockConfig]:
    return set(space_block_configs("onnxw", [160]))


def test_space_enumeration_covers_every_block_of_real_subnets(onnxw160):
    # any search space of onnxw, any subnet at r160: its blocks all occur in the enumeration
    rng = np.random.default_rng(0)
    for _ in range(4):
        digits = "".join(str(d) for d in rng.integers(6, size=6))
        windows = "".join(str(w) for w in (rng.integers(2), *rng.integers(4, size=5)))
        sp = SearchSpace.parse(f"onnxw-{digits}-{windows}")
        for sn in sp.sample(5, seed=1):
            sn = type(sn)(sn.depths, sn.kernel_sizes, sn.widths, sn.expand_ratios, 160)
            missing = [b.config for b in sp.blocks(sn) if b.config not in onnxw160]
            assert not missing


def test_space_enumeration_is_distinct_and_has_the_head(onnxw160):
    configs = space_block_configs("onnxw", [160])
    assert len(configs) == len(onnxw160)
    types = {c.type for c in configs}
    assert {"FirstConvBlock", "FinalExpandBlock", "FeatureMixBlock", "LogitsBlock", "ResNetSEBlock"} <= types
    assert all(c.hw <= 80 for c in configs if c.type != "FirstConvBlock")


def test_search_space_enumeration_is_a_subset(onnxw160):
    sub = set(space_block_configs("onnxw-151122-023231", [160]))
    assert sub < onnxw160
    assert {c.type for c in sub} == {"FirstConvBlock", "ResNetBlock", "MobileNetV2ResBlock", "FusedMBConvResBlock",
                                     "MobileNetV3ResBlock",
                                     "FinalExpandBlock", "FeatureMixBlock", "LogitsBlock"}


def test_limit_and_fraction_are_seeded():
    a = sample_space("onnxw", [160], limit=20, seed=3)
    b = sample_space("onnxw", [160], limit=20, seed=3)
    c = sample_space("onnxw", [160], limit=20, seed=4)
    assert [u.key for u in a] == [u.key for u in b] != [u.key for u in c]
    assert len({u.key for u in a}) == 20 and all(isinstance(u, BlockUnit) for u in a)
    n = len(space_block_configs("onnxw-151122-023231", [160]))
    assert len(sample_space("onnxw-151122-023231", [160], fraction=0.1, seed=0)) == round(0.1 * n)


@pytest.mark.parametrize("kwargs, match", [
    ({"space": "nasw"}, "unknown hyperspace 'nasw'; valid hyperspaces: mobilew, onnxw"),
    ({"resolutions": [170]}, r"resolution=170 is not in onnxw resolutions \[160, 176, 192, 208, 224\]"),
    ({"fraction": 1.5}, r"fraction=1.5 must be in \(0, 1\]"),
    ({"limit": 0}, "limit=0 must be >= 1"),
    ({"kind": "kernel"}, "sampler 'space' draws blocks"),
])
def test_space_sampler_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_space(**{"space": "onnxw", "resolutions": [160], **kwargs})


def test_random_blocks_and_kernels_stay_in_ranges():
    blocks = sample_random(30, seed=1, ranges={"hw": (7, 14), "cin": (16, 64), "cout": (16, 64)})
    assert len(blocks) == 30
    for u in blocks:
        assert 7 <= u.block.hw <= 14 and 16 <= u.block.cin <= 64 and u.block.cin % 8 == 0
    kernels = sample_random(30, seed=1, kind="kernel", kernels=["relu", "fc"])
    assert {u.type for u in kernels} == {"relu", "fc"}
    with pytest.raises(ValueError, match=r"ranges\['depth'\]"):
        sample_random(3, ranges={"depth": (1, 2)})
    with pytest.raises(ValueError, match="unknown kernel 'gelu'"):
        sample_random(3, kind="kernel", kernels=["gelu"])


def test_prior_follows_nn_meters_model_zoo():
    units = sample_prior(300, seed=0)
    assert all(isinstance(u, KernelUnit) for u in units) and len(units) == 300
    assert {u.type for u in units} == {"conv-bn-act", "dwconv-bn-act", "fc"}
    conv = [u.config for u in units if u.type == "conv-bn-act"]
    table = prior_table("conv-bn-act")
    assert min(c["cin"] for c in conv) >= table["cin"].min() - 1
    assert max(c["cout"] for c in conv) <= table["cout"].max() + 1
    assert {c["k"] for c in conv} <= {1, 3, 5, 7} and {c["stride"] for c in conv} <= {1, 2}
    # the prior's k=1/k=3 dominance shows through
    ks = pd.Series([c["k"] for c in conv]).value_counts(normalize=True)
    assert ks.loc[[1, 3]].sum() > 0.6
    assert [u.key for u in sample_prior(10, seed=5)] == [u.key for u in sample_prior(10, seed=5)]


def test_prior_covers_the_detectors_kernel_types():
    # conv / dwconv / linear from nn-Meter's tables, the other types from the kernels of zoo models
    units = sample_prior(30, seed=1, kernels=["conv", "dwconv", "linear", "se-mid", "concat-n"], resolutions=[64])
    types = {u.type for u in units}
    assert len(units) == 30 and types == {"conv", "dwconv", "linear", "se-mid", "concat-n"}
    dw = [u.config for u in units if u.type == "dwconv"]
    assert all(c["groups"] == c["cin"] == c["cout"] and c["k"] == c["kw"] for c in dw)
    conv = [u.config for u in units if u.type == "conv"]
    assert max(c["cout"] for c in conv) <= prior_table("conv-bn-act")["cout"].max() + 1
    assert all(u.to_onnx() is not None for u in units[:5])
    with pytest.raises(ValueError, match="kernel='gelu' has no prior"):
        sample_prior(5, kernels=["gelu"])
    with pytest.raises(ValueError, match="kernels with a prior"):
        prior_table("relu")


class _BiasedPredictor:
    """Predicts every block well except ResNetSE ones (a stand-in for a trained predictor)."""

    def __init__(self, truth: dict):
        self.truth = truth

    def predict_blocks(self, configs):
        return np.array([self.truth[c.to_string()] * (3.0 if c.type == "ResNetSEBlock" else 1.0) for c in configs])


def test_adaptive_samples_around_the_worst_predictions():
    units = sample_space("onnxw", [160], limit=60, seed=0)
    rows = pd.DataFrame({"kind": "block", "status": "ok", "key": [u.key for u in units],
                         "median_ms": np.linspace(0.1, 1.0, len(units))})
    pred = _BiasedPredictor(dict(zip(rows["key"], rows["median_ms"])))
    new = sample_adaptive(rows, pred, limit=20, seed=0, top=3)
    assert 0 < len(new) <= 20
    assert {u.type for u in new} == {"ResNetSEBlock"}
    assert not {u.key for u in new} & set(rows["key"])
    with pytest.raises(ValueError, match="needs a dataset"):
        sample_adaptive(None, pred)


def test_adaptive_compares_in_the_predictors_own_statistic():
    units = sample_space("onnxw", [160], limit=60, seed=0)
    truth = np.linspace(0.1, 1.0, len(units))
    # median_ms says every block is badly predicted; the learned statistic (ratio x 0.5 ms) says only ResNetSE
    rows = pd.DataFrame({"kind": "block", "status": "ok", "key": [u.key for u in units], "median_ms": truth * 7,
                         "ratio": truth / 0.5})
    pred = _BiasedPredictor(dict(zip(rows["key"], truth)))
    pred.target, pred.reference_ms = "norm_ms", 0.5
    assert {u.type for u in sample_adaptive(rows, pred, limit=20, seed=0, top=3)} == {"ResNetSEBlock"}
    with pytest.raises(ValueError, match="lack a ratio"):
        sample_adaptive(rows.drop(columns="ratio"), pred)
