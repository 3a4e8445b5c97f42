"""spaceevo: INT8 inference latency profiling, per-device latency predictors and SpaceEvo search-space design.

``spaceevo.load_predictor(name).predict(x)`` answers for an ONNX file or model, a PyTorch module or a subnet;
``spaceevo.list_predictors()`` lists the registered predictors' names (``describe_predictors()`` their
details). They load on first use (``import spaceevo`` stays light).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = dict.fromkeys(("Predictor", "describe_predictors", "list_predictors", "load_predictor", "torch_to_onnx"),
                      "._facade")
__all__ = sorted({*_LAZY, "__version__"})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
