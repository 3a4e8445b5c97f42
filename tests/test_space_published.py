"""The published SpaceEvo data against the model: every LUT row's FLOPs/params, the ten published subnets."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from spaceevo.datasets.block_lut import lut_files, read_lut, row_blocks
from spaceevo.space import BlockConfig, SearchSpace, get_hyperspace, list_hyperspaces, subnet_to_onnx

# The published params_m column counts the quantised supernet: the FP32 parameters plus the 3 LSQ+ scalars
# (activation scale and offset, weight scale) of every quantised conv, SE convs included; measured over all
# rows, (published - FP32 params) / 3 per conv leaves only the 4-decimal rounding (+-50 params) and a small
# noise (at most 76 params, FusedMBConvSERes / ResNetSE), so params are compared within 80 params (< 1e-4 M).
LSQ_SCALARS_PER_CONV = 3
PARAMS_TOL = 80
# The FLOPs column is rounded to 4 decimals (+-5e-5 M) after a float accumulation (float32 sums: relative error up to 3e-7 seen).
FLOPS_REL = 5e-7


def _n_convs(cfg: BlockConfig) -> int:
    """Convolutions of a block counted from its ONNX-free IR: convs plus two per SE."""
    from spaceevo.space._ops import SE, Conv, Shape, walk

    return sum(1 if isinstance(op, Conv) else 2 if isinstance(op, SE) else 0
               for op, _i, _o in walk(cfg.ops, Shape(cfg.cin, cfg.hw)))


@lru_cache(maxsize=None)
def _counts(cfg: BlockConfig) -> tuple[int, int]:
    return cfg.macs, cfg.params + LSQ_SCALARS_PER_CONV * _n_convs(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("hyperspace", list_hyperspaces())
def test_every_lut_row_matches_block_macs_and_params(lut_dir: Path, hyperspace: str) -> None:
    hyper = get_hyperspace(hyperspace)
    files = lut_files(lut_dir, hyperspace)
    assert len(files) == sum(len(hyper.block_choices) * s.n_windows for s in hyper.stages)
    n_rows, worst_params = 0, 0.0
    for key, path in files.items():
        df = read_lut(path)
        for config, cin, hw, flops_m, params_m in zip(df["config"], df["cin"], df["hw"], df["flops_m"],
                                                      df["params_m"]):
            macs = params = 0
            for cfg in row_blocks(hyper, key, config, int(cin), int(hw)):
                m, p = _counts(cfg)
                macs, params = macs + m, params + p
            where = f"{path.name}: {config} {cin}x{hw}"
            assert abs(macs / 1e6 - flops_m) <= 5e-5 + FLOPS_REL * flops_m + 1e-9, where
            worst_params = max(worst_params, abs(params - params_m * 1e6))
            assert abs(params - params_m * 1e6) <= PARAMS_TOL, where
            n_rows += 1
    assert n_rows == len(files) * 1000
    assert worst_params >= 45  # the rounding of the column is really there: the tolerance is not slack


def _published(shared_data: Path) -> list[tuple[str, str, str]]:
    doc = yaml.safe_load((shared_data / "search_result.yaml").read_text())
    spaces = doc["specific_supernet_encoding_dict"]
    return [(name, spaces[space_key], subnet) for name, (space_key, subnet)
            in doc["specific_subnet_encoding_dict"].items()]


def test_published_subnets_parse_and_run(shared_data: Path) -> None:
    import onnxruntime as ort

    published = _published(shared_data)
    assert len(published) == 10
    for name, space_text, subnet_text in published:
        space = SearchSpace.parse(space_text)
        subnet = space.parse_subnet(subnet_text)
        assert str(subnet) == subnet_text, name
        assert str(space) == space_text
        info = space.subnet_info(subnet)
        assert 100 < info["flops_m"] < 2000 and 2 < info["params_m"] < 30, (name, info["flops_m"], info["params_m"])
        model = subnet_to_onnx(space, subnet, seed=0)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        r = subnet.resolution
        x = np.random.default_rng(0).standard_normal((1, 3, r, r)).astype(np.float32)
        (y,) = sess.run(None, {"input": x})
        assert y.shape == (1, 1000) and np.isfinite(y).all(), name
