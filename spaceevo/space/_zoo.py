"""The model zoo generator: random ONNX variants of classic CNN families, with a manifest.

In the style of nn-Meter's benchmark: each model is one family at random widths, depths, kernel sizes
(and resolution, unless fixed), built with the project's own ONNX builder. A model's seed decides it
completely, so a training zoo and a validation zoo drawn from disjoint seeds share no model
(:func:`zoo_seeds` gives each ``(base seed, family)`` its own range of model seeds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ._onnx_builder import OPSET
from ._zoo_families import FAMILIES, Family

RESOLUTIONS: tuple[int, ...] = (160, 192, 224)
MANIFEST = "manifest.json"
# Model seeds of base seed S are S * SEED_STRIDE + i: two base seeds never share a model seed.
SEED_STRIDE = 100_000


def list_zoo_families(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the zoo's architecture families, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns (e.g. ``"mobilenet*"``); only matching names are listed.

    Returns
    -------
    list of str
    """
    return FAMILIES.names(filter)


def get_zoo_family(name: str) -> Family:
    """The builder of family ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    callable
        ``(rng, resolution, tiny) -> (graph, output, config)``.

    Raises
    ------
    ValueError
        ``name`` is not a family; the message lists the valid names.
    """
    return FAMILIES.get(name)


def _family_index(family: str) -> int:
    return int(hashlib.sha256(family.encode()).hexdigest()[:6], 16) % 1000


def zoo_seeds(family: str, base_seed: int, n: int) -> list[int]:
    """The model seeds of ``n`` models of ``family`` under ``base_seed`` (disjoint across base seeds).

    Parameters
    ----------
    family : str
    base_seed : int
        The zoo's seed (a training zoo and a validation zoo differ in it).
    n : int
        Number of models.

    Returns
    -------
    list of int
    """
    if not isinstance(base_seed, int) or base_seed < 0:
        raise ValueError(f"seed={base_seed!r} must be an integer >= 0")
    if not isinstance(n, int) or n < 1 or n > 99:
        raise ValueError(f"per_family={n!r} must be an integer in 1..99")
    return [base_seed * SEED_STRIDE + _family_index(family) * 100 + i for i in range(n)]


def build_zoo_model(family: str, seed: int, resolution: int | None = None, tiny: bool = False) -> tuple:
    """One zoo model: ``(onnx.ModelProto, entry)`` where entry holds family, seed, resolution, MACs and config.

    Parameters
    ----------
    family : str
        A zoo family (``list_zoo_families``).
    seed : int
        The model's seed (``zoo_seeds``): it draws the architecture and the weights.
    resolution : int, optional
        Input side; default: drawn from ``RESOLUTIONS``.
    tiny : bool
        A small variant (tests).

    Returns
    -------
    tuple
        ``(onnx.ModelProto, entry dict)``.

    Raises
    ------
    ValueError
        An unknown family, or a resolution below 32.
    """
    from onnx import TensorProto, checker, helper

    fn = get_zoo_family(family)
    rng = np.random.default_rng(seed)
    res = int(resolution) if resolution is not None else int(rng.choice(RESOLUTIONS))
    if res < 32:
        raise ValueError(f"resolution={res} must be >= 32")
    g, out, config = fn(rng, res, tiny)
    name = f"{family}-s{seed}-r{res}"
    graph = helper.make_graph(g.nodes, name,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, res, res])],
                              [helper.make_tensor_value_info(out.name, TensorProto.FLOAT, [1, out.c])],
                              initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="spaceevo-zoo")
    model.ir_version = min(model.ir_version, 10)
    checker.check_model(model)
    params = int(sum(int(np.prod(t.dims)) for t in g.inits))
    entry = {"name": name, "file": f"{name}.onnx", "family": family, "seed": seed, "resolution": res,
             "tiny": tiny, "macs": int(g.macs), "params": params, "nodes": len(g.nodes), "config": config}
    return model, entry


def generate_zoo(out_dir: str | Path, families: Sequence[str] | str = "all", per_family: int = 5, seed: int = 0,
                 resolution: int | None = None, tiny: bool = False) -> dict:
    """Write ``per_family`` ONNX models of each family to ``out_dir`` with ``manifest.json``; return the manifest.

    Parameters
    ----------
    out_dir : folder to write (created; existing models of the same name are overwritten).
    families : family names (a list, or one comma-separated string), or ``"all"``.
    per_family : models per family (1..99).
    seed : base seed; models of different base seeds never coincide (train on one, validate on another).
    resolution : fixed input resolution, or None to draw it per model from ``RESOLUTIONS``.
    tiny : an eighth of the widths and depth 1 per stage (tests).

    Returns
    -------
    dict with ``seed``, ``resolution``, ``families`` and ``models`` (one entry per model).

    Raises
    ------
    ValueError for an unknown family, a bad seed, count or resolution.
    """
    import onnx

    if isinstance(families, str):
        families = [f.strip() for f in families.split(",") if f.strip()]
    names = list_zoo_families() if list(families) == ["all"] else list(families)
    for f in names:
        get_zoo_family(f)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = []
    for fam in names:
        for s in zoo_seeds(fam, seed, per_family):
            model, entry = build_zoo_model(fam, s, resolution, tiny)
            onnx.save(model, str(out / entry["file"]))
            models.append(entry)
    manifest = {"format": "spaceevo-zoo", "seed": seed, "resolution": resolution, "tiny": tiny,
                "families": names, "models": models}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_zoo(folder: str | Path) -> dict:
    """A zoo folder's manifest, or one made up from its ``*.onnx`` files when it has none (family unknown).

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    dict
        The manifest: ``{"models": [{name, path, family, seed, ...}], ...}``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"models folder {str(folder)!r} does not exist")
    path = folder / MANIFEST
    if path.is_file():
        return json.loads(path.read_text())
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise ValueError(f"models folder {str(folder)!r} holds no *.onnx files")
    return {"format": "spaceevo-zoo", "seed": None, "families": [], "models": [
        {"name": p.stem, "file": p.name, "family": "unknown", "seed": None} for p in files]}
