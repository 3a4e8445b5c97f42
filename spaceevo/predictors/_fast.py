"""Fast subnet latency: cache every block configuration a search space can produce, then gather and sum.

A subnet's block at (stage, slot) depends only on the resolution, the previous block's width and the
block's own (k, w, e). All such latencies go into one flat vector; a subnet is a set of indexes into it.
"""

from __future__ import annotations

from itertools import chain
from typing import Callable, Sequence

import numpy as np

from spaceevo.space import BlockConfig, SearchSpace, Subnet, conv_out_hw


class SubnetLatencyTable:
    """Block-latency cache of one search space; sums of block latencies of many subnets at once.

    Parameters
    ----------
    space : SearchSpace
    block_latency : callable
        ``configs -> latencies (ms)``, called once with every block configuration the space can hold.
    resolutions : sequence of int, optional
        Default: the hyperspace's resolutions.
    """

    def __init__(self, space: SearchSpace, block_latency: Callable[[list[BlockConfig]], np.ndarray],
                 resolutions: Sequence[int] | None = None):
        self._layout(space, resolutions)
        configs = self._enumerate()
        self._configs: list[BlockConfig] | None = configs
        self._set_values(np.asarray(block_latency(configs), dtype=np.float64),
                         np.array([c.params for c in configs], dtype=np.float64) / 1e6)

    @classmethod
    def from_arrays(cls, space: SearchSpace, latency: np.ndarray, params_m: np.ndarray,
                    resolutions: Sequence[int] | None = None) -> "SubnetLatencyTable":
        """A table from already computed per-config values (a compiled cache): no config is built until asked.

        Raises
        ------
        ValueError
            If ``latency`` or ``params_m`` does not hold one value per cached configuration of ``space``.
        """
        self = cls.__new__(cls)
        self._layout(space, resolutions)
        self._configs = None
        for name, v in (("latency", latency), ("params_m", params_m)):
            if np.shape(v) != (self.n_configs,):
                raise ValueError(f"{name} has shape {np.shape(v)}; the table of {space} needs ({self.n_configs},)")
        self._set_values(np.asarray(latency, dtype=np.float64), np.asarray(params_m, dtype=np.float64))
        return self

    def _layout(self, space: SearchSpace, resolutions: Sequence[int] | None) -> None:
        """Choice grids and the offset of every (resolution, stage, first-block?) table in the flat vector."""
        self.space = space
        h = space.hyperspace
        self.resolutions = tuple(resolutions or h.resolutions)
        self._r_index = {r: i for i, r in enumerate(self.resolutions)}
        self.options = space.stage_options()
        self.n_stages = len(self.options)
        self.max_depth = max(max(st.depths) for st, _c, _w in self.options)
        self._min_depth = np.array([min(st.depths) for st, _c, _w in self.options])
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
        # base[r, s, first?] = offset of that (cin, choice) table in the flat vector
        self.base = np.zeros((len(self.resolutions), self.n_stages, 2), dtype=np.int64)
        self.head_base = np.zeros(len(self.resolutions), dtype=np.int64)
        n = 0
        for ri in range(len(self.resolutions)):
            for s in range(self.n_stages):
                n_prev = 1 if s == 0 else len(self._w[s - 1])
                self.base[ri, s, 0] = n
                n += n_prev * int(self._n_choice[s])
                self.base[ri, s, 1] = n
                n += len(self._w[s]) * int(self._n_choice[s])
            self.head_base[ri] = n
            n += len(self._w[-1]) + 2
        self.n_configs = n
        # vectorised encoding: per field, the sorted values of every stage and each one's position per stage
        self._enc = {}
        for field, grids in (("k", self._k), ("w", self._w), ("e", self._e)):
            vals = np.array(sorted({float(v) for g in grids for v in g}), dtype=np.float64)  # np.unique loads np.ma
            pos = np.full((self.n_stages, len(vals)), -1, dtype=np.int64)
            for s, g in enumerate(grids):
                for i, v in enumerate(g):
                    pos[s, np.searchsorted(vals, v)] = i
            self._enc[field] = (vals, pos)
        # fast path: per stage, code -> (its width position * next slot's choice count)
        self._wmul = [((np.arange(int(nc)) // int(ne)) % int(nw)) * int(nc)
                      for nc, ne, nw in zip(self._n_choice, self._ne, self._nw)]
        self._wpos_of_code = [(np.arange(int(nc)) // int(ne)) % int(nw)
                              for nc, ne, nw in zip(self._n_choice, self._ne, self._nw)]

    def _enumerate(self) -> list[BlockConfig]:
        """Every block configuration of the space, in the order of the flat vector."""
        h = self.space.hyperspace
        configs: list[BlockConfig] = []
        for ri, r in enumerate(self.resolutions):
            hw = r
            for s, (stage, choice, widths) in enumerate(self.options):
                prev = (h.in_channels,) if s == 0 else self._w[s - 1]
                hw_out = conv_out_hw(hw, 3, stage.stride)
                for j, (cins, hw_in, stride) in enumerate(((prev, hw, stage.stride), (widths, hw_out, 1))):
                    if self.base[ri, s, j] != len(configs):
                        raise RuntimeError("the table layout and the enumerated configurations disagree")
                    for cin in cins:
                        for k in self._k[s]:
                            for w in self._w[s]:
                                for e in self._e[s]:
                                    configs.append(BlockConfig(choice.type, hw_in, cin, w, k, e, stride, choice.act))
                hw = hw_out
            for cin in self._w[-1]:
                configs.append(BlockConfig("FinalExpandBlock", hw, cin, h.final_expand_width, 1, 0, 1, h.head_act))
            configs.append(BlockConfig("FeatureMixBlock", hw, h.final_expand_width, h.feature_mix_width, 1, 0, 1,
                                       h.head_act))
            configs.append(BlockConfig("LogitsBlock", 1, h.feature_mix_width, h.n_classes, 1, 0, 1, "relu"))
        if len(configs) != self.n_configs:
            raise RuntimeError("the table layout and the enumerated configurations disagree")
        return configs

    @property
    def configs(self) -> list[BlockConfig]:
        """Every cached block configuration, in the order of ``latency`` (built on first use)."""
        if self._configs is None:
            self._configs = self._enumerate()
        return self._configs

    def _set_values(self, latency: np.ndarray, params_m: np.ndarray) -> None:
        self.latency = latency
        self.params_m = params_m
        self._lat_list = self.latency.tolist()
        self._params_list = self.params_m.tolist()
        self._base_list = self.base.tolist()
        nw_last = len(self._w[-1])
        self._fixed_head = [self._lat_list[b + nw_last] + self._lat_list[b + nw_last + 1] for b in self.head_base]
        self._fixed_head_params = [self._params_list[b + nw_last] + self._params_list[b + nw_last + 1]
                                   for b in self.head_base]

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, subnets: Sequence[Subnet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer codes: resolution index (n,), depths (n, stages), choice index (n, stages, max_depth).

        Vectorised: the subnets' fields are flattened once, then every block's (k, w, e) is mapped to its
        choice index with array look-ups. An invalid subnet raises the space's own error naming the field.
        """
        n = len(subnets)
        S = self.n_stages
        r_idx = np.zeros(n, dtype=np.int64)
        depths = np.zeros((n, S), dtype=np.int64)
        codes = np.zeros((n, S, self.max_depth), dtype=np.int64)
        if n == 0:
            return r_idx, depths, codes
        try:
            res = np.fromiter((sn.resolution for sn in subnets), dtype=np.float64, count=n)
            depths[:] = np.array([sn.depths for sn in subnets], dtype=np.int64)
            counts = depths.sum(axis=1)
            fields = {}
            for name, attr in (("k", "kernel_sizes"), ("w", "widths"), ("e", "expand_ratios")):
                lens = np.fromiter((len(getattr(sn, attr)) for sn in subnets), dtype=np.int64, count=n)
                if (lens < counts).any():
                    raise ValueError(name)
                if (lens == counts).all():
                    fields[name] = np.fromiter(chain.from_iterable(getattr(sn, attr) for sn in subnets),
                                               dtype=np.float64, count=int(counts.sum()))
                else:  # extra trailing entries are ignored, as the blocks never read them
                    fields[name] = np.fromiter(chain.from_iterable(getattr(sn, attr)[:c] for sn, c in
                                                                   zip(subnets, counts.tolist())),
                                               dtype=np.float64, count=int(counts.sum()))
            r_vals = np.asarray(self.resolutions, dtype=np.float64)
            r_order = np.argsort(r_vals)
            ri = np.minimum(np.searchsorted(r_vals[r_order], res), len(r_vals) - 1)
            if (r_vals[r_order][ri] != res).any() or (depths < 0).any() or (depths > self.max_depth).any():
                raise ValueError("resolution or depth")
            r_idx[:] = r_order[ri]
            flat_depths = depths.ravel()
            stage = np.repeat(np.tile(np.arange(S), n), flat_depths)
            owner = np.repeat(np.arange(n * S), flat_depths)  # (subnet * S + stage) of each block
            starts = np.concatenate([[0], np.cumsum(flat_depths)[:-1]])
            slot = np.arange(len(stage)) - starts[owner]
            pos = {}
            for name, x in fields.items():
                vals, table = self._enc[name]
                vi = np.minimum(np.searchsorted(vals, x), len(vals) - 1)
                p = table[stage, vi]
                if ((vals[vi] != x) | (p < 0)).any():
                    raise ValueError(name)
                pos[name] = p
            codes.reshape(n * S, self.max_depth)[owner, slot] = (pos["k"] * self._nw[stage] + pos["w"]) \
                * self._ne[stage] + pos["e"]
        except (TypeError, ValueError, IndexError, OverflowError):
            self._explain(subnets)
        return r_idx, depths, codes

    def _explain(self, subnets: Sequence[Subnet]) -> None:
        """Raise the error of the first subnet the table cannot encode (invalid, or at an uncached resolution)."""
        for sn in subnets:
            self.space.validate(sn)
            if sn.resolution not in self._r_index:
                raise ValueError(f"subnet {sn} is outside the cached resolutions {list(self.resolutions)}")
        raise ValueError(f"subnets outside the table of {self.space} (cached resolutions {list(self.resolutions)})")

    def block_indices(self, sn: Subnet) -> list[int]:
        """Flat indexes of ``sn``'s blocks, in the order of ``space.blocks(sn)`` (stages, then the head)."""
        try:
            ri = self._r_index[sn.resolution]
            base = self._base_list[ri]
            out = []
            pos, prev = 0, 0
            for s, d in enumerate(sn.depths):
                kp, wp, ep = self._kpos[s], self._wpos[s], self._epos[s]
                nw, ne = len(wp), len(ep)
                nc = nw * ne * len(kp)
                for j in range(d):
                    w = wp[sn.widths[pos]]
                    c = (kp[sn.kernel_sizes[pos]] * nw + w) * ne + ep[sn.expand_ratios[pos]]
                    out.append(base[s][0 if j == 0 else 1] + prev * nc + c)
                    prev, pos = w, pos + 1
            head = int(self.head_base[ri])
            return out + [head + prev, head + len(self._w[-1]), head + len(self._w[-1]) + 1]
        except (KeyError, IndexError, TypeError):
            self.space.validate(sn)
            raise ValueError(f"subnet {sn} is outside the cached resolutions {list(self.resolutions)}") from None

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
        # The additions run in a fixed order (head, then block by block, final expand last) so that every
        # path gives the same floating-point sum; slots below a stage's smallest depth need no mask.
        head = self.head_base.take(r_idx)
        nw_last = len(self._w[-1])
        total = lat.take(head + nw_last) + lat.take(head + (nw_last + 1))
        base = self.base.take(r_idx, axis=0)  # (n, S, 2)
        rows = np.arange(len(r_idx))
        prev_w = None
        for s in range(self.n_stages):
            nc = int(self._n_choice[s])
            d = depths[:, s]
            c = codes[:, s, :]
            idx0 = base[:, s, 0] + c[:, 0]
            if prev_w is not None:
                idx0 += prev_w * nc
            total = total + lat.take(idx0)
            wmul = self._wmul[s]
            b1 = base[:, s, 1]
            min_d = int(self._min_depth[s])
            for j in range(1, int(d.max()) if len(d) else 0):
                idx = b1 + wmul.take(c[:, j - 1]) + c[:, j]
                total = total + (lat.take(idx) if j < min_d else np.where(d > j, lat.take(idx), 0.0))
            prev_w = self._wpos_of_code[s].take(c[rows, d - 1])
        total = total + lat.take(head + prev_w)
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
