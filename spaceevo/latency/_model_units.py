"""Whole ONNX models as collector units, and the profiling plan of a folder of models (kernels + models).

``OnnxModelUnit`` times an ONNX file as a whole (kind ``model``, type ``onnx-model``); its config keeps the
file's path and digest, so training can detect its kernels again for the composition term.
``model_profile_units`` turns a folder (a zoo with its manifest, or any ``*.onnx``) into the distinct
kernels of all its models plus, optionally, the models themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import _detect  # a module reference: _units imports this module while _detect may be loading


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
    """
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class OnnxModelUnit:
    """A whole ONNX model file (FP32, static input shape): kind ``model``, type ``onnx-model``."""

    path: str
    name: str | None = None
    family: str | None = None
    seed: int | None = None
    input_shape_override: tuple | None = None
    kind: str = field(default="model", init=False)
    type: str = field(default="onnx-model", init=False)

    def __post_init__(self) -> None:
        p = Path(self.path)
        if not p.is_file():
            raise FileNotFoundError(f"model file {self.path!r} does not exist")
        object.__setattr__(self, "path", str(p.resolve()))
        object.__setattr__(self, "name", self.name or p.stem)
        if self.input_shape_override is not None:
            object.__setattr__(self, "input_shape_override", tuple(int(v) for v in self.input_shape_override))

    @property
    def digest(self) -> str:
        """The file's SHA-256 (16 hex digits): two files with the same bytes are one unit."""
        return file_digest(self.path)

    @property
    def config(self) -> dict:
        """Name, family, seed, path and digest."""
        cfg = {"name": self.name, "family": self.family, "seed": self.seed, "path": self.path, "digest": self.digest}
        if self.input_shape_override is not None:
            cfg["input_shape"] = list(self.input_shape_override)
        return cfg

    @property
    def key(self) -> str:
        """``onnx/<name>@<digest>`` (plus the input shape when it is given)."""
        shape = "" if self.input_shape_override is None else "x".join(map(str, self.input_shape_override))
        return f"onnx/{self.name}@{self.digest}" + (f"/{shape}" if shape else "")

    @property
    def flat(self) -> dict:
        """Feature columns: hw is the input side, cin the input channels."""
        shape = self.input_shape
        return {"hw": shape[-1] if len(shape) == 4 else None, "cin": shape[1] if len(shape) > 1 else None,
                "cout": None, "k": None, "e": None, "stride": None, "act": None}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The static input shape."""
        import onnx

        if self.input_shape_override is not None:
            return self.input_shape_override
        m = onnx.load(self.path, load_external_data=False)
        inits = {i.name for i in m.graph.initializer}
        inp = next(i for i in m.graph.input if i.name not in inits)
        return tuple(int(d.dim_value) for d in inp.type.tensor_type.shape.dim)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole model."""
        return _detect.detect_kernels(self.path, input_shape=self.input_shape_override).macs

    def to_onnx(self, seed: int = 0):
        """The model as stored (validated: static shapes, supported opset), its input shape fixed if given."""
        return _detect.load_onnx(self.path, self.input_shape_override)

    def to_keras(self, seed: int = 0):
        """ONNX files are timed with onnxruntime only."""
        raise ValueError(f"{self.path}: an ONNX model file has no Keras form; time it with --backend ort")


def model_entries(models: str | Path | Sequence[str | Path]) -> list[dict]:
    """``[{path, name, family, seed}]`` of a zoo folder (its manifest), any folder of ``*.onnx``, or file paths.

    Parameters
    ----------
    models : str, Path or sequence of them
        A folder, or model files.

    Returns
    -------
    list of dict

    Raises
    ------
    FileNotFoundError
        A path that is neither a folder nor a file.
    ValueError
        A folder without models.
    """
    if isinstance(models, (str, Path)) and Path(models).is_dir():
        folder = Path(models)
        man = folder / "manifest.json"
        if man.is_file():
            data = json.loads(man.read_text())
            return [{"path": str(folder / m["file"]), "name": m["name"], "family": m.get("family"),
                     "seed": m.get("seed")} for m in data["models"]]
        files = sorted(folder.glob("*.onnx"))
        if not files:
            raise ValueError(f"models folder {str(folder)!r} holds no *.onnx files (and no manifest.json)")
        return [{"path": str(p), "name": p.stem, "family": None, "seed": None} for p in files]
    paths = [models] if isinstance(models, (str, Path)) else list(models)
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"--models {str(p)!r} is neither a folder nor a model file")
    return [{"path": str(p), "name": Path(p).stem, "family": None, "seed": None} for p in paths]


def model_profile_units(models: str | Path | Sequence[str | Path], backend: str = "ort", dtype: str = "int8",
                        rules: dict | None = None, whole: bool = True) -> dict:
    """The profiling plan of some models: their distinct kernels (deduplicated) and the models themselves.

    Parameters
    ----------
    models : a zoo folder, a folder of ``*.onnx`` or a list of files.
    backend, dtype : whose fusion rules detect the kernels (unless ``rules``).
    whole : also time every model whole (for the composition term and validation).

    Returns
    -------
    dict with ``kernels`` (KernelUnits), ``models`` (OnnxModelUnits), ``unsupported`` (per op, over all models)
    and ``per_model`` kernel counts.
    """
    entries = model_entries(models)
    kernels: dict[str, object] = {}
    unsupported: dict[str, int] = {}
    per_model = {}
    units = []
    for e in entries:
        d = _detect.detect_kernels(e["path"], backend, dtype, rules)
        per_model[e["name"]] = len(d.kernels)
        for k in d.kernels:
            if k.supported:
                kernels.setdefault(k.key, k.unit())
            else:
                unsupported[k.config["op"]] = unsupported.get(k.config["op"], 0) + 1
        if whole:
            units.append(OnnxModelUnit(e["path"], e["name"], e.get("family"), e.get("seed")))
    return {"kernels": list(kernels.values()), "models": units, "unsupported": unsupported, "per_model": per_model}
