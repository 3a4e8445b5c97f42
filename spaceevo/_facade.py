"""The Python facade: ``spaceevo.load_predictor(name).predict(x)`` for ONNX files, ONNX models, PyTorch modules
and subnet encodings, the way nn-Meter's ``load_latency_predictor(name).predict(model)`` is used.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence


class Predictor:
    """A loaded latency predictor of one device: ``predict(x)`` returns milliseconds.

    ``x`` may be an ONNX file path, an ``onnx.ModelProto``, a ``torch.nn.Module`` (with ``input_shape``;
    exported with ``torch.onnx``) or a subnet encoding (with ``space``). ONNX and PyTorch models need a
    kernel predictor (``spaceevo train --kind kernel``); subnets a block predictor.
    """

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        self.name = name

    @property
    def kind(self) -> str:
        """``kernel`` (any ONNX model) or ``block`` (subnets of a search space)."""
        return getattr(self.inner, "unit_kind", "block")

    @property
    def device(self) -> str:
        """The device the predictor was trained for."""
        return self.inner.device

    def predict(self, x: Any, input_shape: Sequence[int] | None = None, space: str | None = None,
                detail: bool = False) -> float | dict:
        """Latency of ``x`` in ms (a float), or with ``detail=True`` the dict with the per-kernel (per-block) table.

        Parameters
        ----------
        x : ONNX path, ``onnx.ModelProto``, ``torch.nn.Module`` or a subnet encoding string.
        input_shape : the input shape, e.g. ``(1, 3, 224, 224)``: required for a torch module, optional for ONNX.
        space : the search space of a subnet encoding.
        detail : return the full answer (``latency_ms``, ``kernels`` or ``blocks``, ``unsupported``).

        Returns
        -------
        float (ms) or dict.

        Raises
        ------
        ValueError for an input this predictor cannot answer (the message names the fix).
        """
        out = self._predict(x, input_shape, space)
        return out if detail else float(out["latency_ms"])

    def _predict(self, x: Any, input_shape: Sequence[int] | None, space: str | None) -> dict:
        if isinstance(x, str) and space is not None:
            if self.kind != "block":
                raise ValueError(f"predictor {self.name!r} is a kernel predictor of ONNX models; a subnet of a "
                                 "search space needs a block predictor (e.g. vnni-ort-int8)")
            return self.inner.predict_subnet(space, x)
        if self.kind != "kernel":
            raise ValueError(f"predictor {self.name!r} is a block predictor of search-space subnets: give a subnet "
                             "with space=..., or load a kernel predictor (spaceevo train --kind kernel) for models")
        if isinstance(x, (str, Path)):
            if not str(x).endswith(".onnx") and not Path(x).is_file():
                raise ValueError(f"{x!r} is neither an ONNX file nor (without space=...) a subnet; pass space= "
                                 "for a subnet encoding")
            return self.inner.predict_model(x, input_shape)
        if type(x).__name__ == "ModelProto":
            return self.inner.predict_model(x, input_shape)
        if _is_torch_module(x):
            if input_shape is None:
                raise ValueError("a torch.nn.Module needs input_shape=(1, C, H, W) to be exported to ONNX")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                torch_to_onnx(x, input_shape, path)
                return self.inner.predict_model(path)
        raise ValueError(f"cannot predict a {type(x).__name__}: give an ONNX path, an onnx.ModelProto, a "
                         "torch.nn.Module with input_shape, or a subnet encoding with space=")

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, kind={self.kind!r}, device={self.device!r})"


def _is_torch_module(x: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.nn.Module)


def torch_to_onnx(module: Any, input_shape: Sequence[int], path: str | Path, opset: int = 17) -> Path:
    """Export a PyTorch module in eval mode to ONNX (BatchNorm folded, static shape) with ``torch.onnx``."""
    import torch

    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(*[int(v) for v in input_shape]),), str(path), dynamo=False,
                              opset_version=opset, do_constant_folding=True)
    finally:
        module.train(was_training)
    return Path(path)


def load_predictor(name_or_path: str | Path) -> Predictor:
    """A predictor by registered name (``spaceevo.list_predictors()``) or file path.

    Parameters
    ----------
    name_or_path : registered name (built-in or in ``$SPACEEVO_HOME/predictors``) or a predictor file.

    Returns
    -------
    Predictor whose ``predict(x)`` returns milliseconds.

    Raises
    ------
    FileNotFoundError when the name is unknown (the message lists the registered names).
    """
    from spaceevo.predictors import load_predictor as _load

    return Predictor(_load(name_or_path), str(name_or_path))


def list_predictors(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered predictors (built-in and user ones), sorted, as ``timm.list_models``.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns (e.g. ``"*-int8"``); only matching names are listed.

    Returns
    -------
    list of str
    """
    from spaceevo.predictors import list_predictors as _list

    return _list(filter)


def describe_predictors() -> list[dict]:
    """One row per registered predictor file: name, origin, path, device, dtype, estimator, unit_kind, created_at.

    Returns
    -------
    list of dict
        ``unit_kind`` is ``block`` (subnets of a search space) or ``kernel`` (any ONNX model).
    """
    from spaceevo.predictors import describe_predictors as _describe

    return _describe()
