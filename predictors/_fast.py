"""Fast subnet latency: cache every block configuration a search space can produce, then gather and sum.

A subnet's block at (stage, slot) depends only on the resolution, the previous block's width and the
block's own (k, w, e). All such latencies go into one flat vector; a subnet is a set of indexes into it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from spaceevo.space import BlockConfig, SearchSpace, Subnet, conv_out_hw


class SubnetLatencyTable:
    """Block-latency cache of one search space; sums of block latencies of many subnets at once."""

    def __init__(self, space: SearchSpace, block_latency: Callable[[list[BlockConfig]], np.ndarray],
                 resolutions: Sequence[int] | None = None):
        self.space = space
        h = space.hyperspace
        self.resolutions = tuple(resolutions or h.resolutions)
        self._r_index = {r: i for i, r in enumerate(self.resolutions)}
        self.options = space.stage_options()
        self.n_stages = len(self.options)
        self.max_depth = max(max(st.depths) for st, _c, _w in self.options)
        # per stage: choice grids and index maps
        self._k = [tuple(c.kernel_sizes) for _s, c, _w in self.options]
        self._w = [tuple(w) for _s, _c, w in self.options]
        self._e = [tuple(float(x) for x in c.expand_ratios) for _s, c, _w in self.options]
        self._kpos = [{v: i for i, v in enumerate(ks)} for ks in self._k]
        self._wpos = [{v: i for i, v in enumerate(ws)} for ws in self._w]
        self._epos = [{v: i for i, v in enumerate(es)} for es in self._e]
        self._n_choice = np.array([len(k) * len(w) * len(e) for k, w, e in zip(self._k, self._w, self._e)])
        self._nw = np.array([len(w) for w in self._w])
        self._ne = np.array([len(e) for e in self._e])
        configs: list[BlockConfig] = []
        # base[r, s, first?] = offset of that (cin, choice) table in the flat vector
        self.base = np.zeros((len(self.resolutions), self.n_stages, 2), dtype=np.int64)
        self.head_base = np.zeros(len(self.resolutions), dtype=np.int64)
        for ri, r in enumerate(self.resolutions):
            hw = r
            for s, (stage, choice, widths) in enumerate(self.options):
                prev = (h.in_channels,) if s == 0 else self._w[s - 1]
                hw_out = conv_out_hw(hw, 3, stage.stride)
                for j, (cins, hw_in, stride) in enumerate(((prev, hw, stage.stride), (widths, hw_out, 1))):
                    self.base[ri, s, j] = len(configs)
                    for cin in cins:
                        for k in self._k[s]:
                            for w in self._w[s]:
                                for e in self._e[s]:
                                    configs.append(BlockConfig(choice.type, hw_in, cin, w, k, e, stride, choice.act))
                hw = hw_out
            self.head_base[ri] = len(configs)
            for cin in self._w[-1]:
                configs.append(BlockConfig("FinalExpandBlock", hw, cin, h.final_expand_width, 1, 0, 1, h.head_act))
            configs.append(BlockConfig("FeatureMixBlock", hw, h.final_expand_width, h.feature_mix_width, 1, 0, 1,
                                       h.head_act))
            configs.append(BlockConfig("LogitsBlock", 1, h.feature_mix_width, h.n_classes, 1, 0, 1, "relu"))
        self.configs = configs
        self.latency = np.asarray(block_latency(configs), dtype=np.float64)
        self.params_m = np.array([c.params for c in configs], dtype=np.float64) / 1e6
        self._lat_list = self.latency.tolist()
        self._params_list = self.params_m.tolist()
        self._base_list = self.base.tolist()
        nw_last = len(self._w[-1])
        self._fixed_head = [self._lat_list[b + nw_last] + self._lat_list[b + nw_last + 1] for b in self.head_base]
        self._fixed_head_params = [self._params_list[b + nw_last] + self._params_list[b + nw_last + 1]
                                   for b in self.head_base]

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, subnets: Sequence[Subnet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer codes: resolution index (n,), depths (n, stages), choice index (n, stages, max_depth)."""
        n = len(subnets)
        r_idx = np.zeros(n, dtype=np.int64)
        depths = np.zeros((n, self.n_stages), dtype=np.int64)
        codes = np.zeros((n, self.n_stages, self.max_depth), dtype=np.int64)
        for i, sn in enumerate(subnets):
            try:
                r_idx[i] = self._r_index[sn.resolution]
                pos = 0
                for s, d in enumerate(sn.depths):
                    depths[i, s] = d
                    kp, wp, ep = self._kpos[s], self._wpos[s], self._epos[s]
                    nw, ne = len(wp), len(ep)
                    for j in range(d):
                        codes[i, s, j] = (kp[sn.kernel_sizes[pos]] * nw + wp[sn.widths[pos]]) * ne \
                            + ep[float(sn.expand_ratios[pos])]
                        pos += 1
            except (KeyError, IndexError, ValueError):
                self.space.validate(sn)
                raise ValueError(f"subnet {sn} is outside the cached resolutions {list(self.resolutions)}") from None
        return r_idx, depths, codes

    def random_encoded(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` uniformly random valid subnets, already encoded (for throughput benchmarks)."""
        rng = np.random.default_rng(seed)
        r_idx = rng.integers(0, len(self.resolutions), n)
        depths = np.stack([rng.choice(np.array(st.depths), n) for st, _c, _w in self.options], axis=1)
        codes = np.stack([rng.integers(0, int(nc), (n, self.max_depth)) for nc in self._n_choice], axis=1)
        return r_idx, depths, codes

    # -- queries -------------------------------------------------------------------------------
    def sum_encoded(self, r_idx: np.ndarray, depths: np.ndarray, codes: np.ndarray,
                    chunk: int = 1 << 14, values: np.ndarray | None = None) -> np.ndarray:
        """Sum of block latencies (ms; or of ``values``, one per cached config) of encoded subnets, vectorised."""
        lat = self.latency if values is None else values
        n = len(r_idx)
        if n <= chunk:
            return self._sum_chunk(r_idx, depths, codes, lat)
        out = np.empty(n)
        for i in range(0, n, chunk):
            out[i:i + chunk] = self._sum_chunk(r_idx[i:i + chunk], depths[i:i + chunk], codes[i:i + chunk], lat)
        return out

    def _sum_chunk(self, r_idx: np.ndarray, depths: np.ndarray, codes: np.ndarray, lat: np.ndarray) -> np.ndarray:
        total = lat[self.head_base[r_idx] + len(self._w[-1])] + lat[self.head_base[r_idx] + len(self._w[-1]) + 1]
        base = self.base[r_idx]  # (n, S, 2)
        prev_w = np.zeros(len(r_idx), dtype=np.int64)
        for s in range(self.n_stages):
            ne, nw, nc = int(self._ne[s]), int(self._nw[s]), int(self._n_choice[s])
            d = depths[:, s]
            c = codes[:, s, :]
            w = (c // ne) % nw
            idx0 = base[:, s, 0] + prev_w * nc + c[:, 0]
            total = total + lat[idx0]
            for j in range(1, int(d.max()) if len(d) else 0):
                idx = base[:, s, 1] + w[:, j - 1] * nc + c[:, j]
                total = total + np.where(d > j, lat[idx], 0.0)
            prev_w = w[np.arange(len(d)), d - 1]
        total = total + lat[self.head_base[r_idx] + prev_w]
        return total

    def sum_subnets(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """Sum of block latencies (ms) of each subnet."""
        return self.sum_encoded(*self.encode(subnets))

    def sum_one(self, sn: Subnet) -> float:
        """Sum of block latencies (ms) of one subnet, in plain Python (microseconds)."""
        return self.sums_one(sn)[0]

    def sums_one(self, sn: Subnet) -> tuple[float, float]:
        """Sums of block latencies (ms) and block params (M) of one subnet, in plain Python."""
        lat, par = self._lat_list, self._params_list
        try:
            ri = self._r_index[sn.resolution]
            base = self._base_list[ri]
            total = self._fixed_head[ri]
            params = self._fixed_head_params[ri]
            pos, prev = 0, 0
            for s, d in enumerate(sn.depths):
                kp, wp, ep = self._kpos[s], self._wpos[s], self._epos[s]
                nw, ne = len(wp), len(ep)
                nc = nw * ne * len(kp)
                for j in range(d):
                    w = wp[sn.widths[pos]]
                    c = (kp[sn.kernel_sizes[pos]] * nw + w) * ne + ep[sn.expand_ratios[pos]]
                    i = base[s][0 if j == 0 else 1] + prev * nc + c
                    total += lat[i]
                    params += par[i]
                    prev, pos = w, pos + 1
            i = int(self.head_base[ri]) + prev
            return total + lat[i], params + par[i]
        except (KeyError, IndexError):
            self.space.validate(sn)
            raise ValueError(f"subnet {sn} is outside the cached resolutions {list(self.resolutions)}") from None
