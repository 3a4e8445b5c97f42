"""The fast path of the command line: ``predict SUBNET`` and ``qt-score`` without building the typer app.

typer coerces every option through pydantic and renders help with rich: about a quarter of a second
before a command starts, longer than a compiled table query itself. For the two table queries, this
module reads the command line with a plain parser and calls the same functions as the typer commands
(``_queries``). It accepts only what it fully understands (the commands' own options, as ``--opt value``
or ``--opt=value``); anything else (``--help``, an unknown option, a value that does not convert, a
missing argument) returns ``False`` and the typer app handles it, errors and help included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple


class _Spec(NamedTuple):
    positional: tuple[str, ...]  # parameter names, in order; each must be given
    options: dict[str, tuple[str, Callable[[str], Any], bool]]  # flag -> (parameter, convert, repeatable)
    flags: dict[str, str]  # boolean flag -> parameter
    required: tuple[str, ...]  # required options (by parameter name)
    defaults: dict[str, Any]
    run: Callable[..., None]


def _predict(**kw: Any) -> None:
    from ._queries import predict_block, predict_subnet

    if kw.get("block") is not None:
        predict_block(kw["block"], kw["predictor"], kw["as_json"])
    else:
        predict_subnet(kw["subnet"], kw["space"], kw["predictor"], kw["as_json"])


def _qt_score(**kw: Any) -> None:
    from ._queries import qt_score

    qt_score(kw["space"], kw["lut_dir"], kw["constraint"], kw["predictor"], kw["latency"], kw["samples"], kw["seed"],
             kw["repeats"], kw["as_json"])


_SPECS = {
    "predict": _Spec(("subnet",), {"--space": ("space", str, False), "--predictor": ("predictor", str, False),
                                   "-p": ("predictor", str, False)},
                     {"--json": "as_json"}, ("space", "predictor"), {"as_json": False}, _predict),
    # --block needs neither SUBNET nor --space
    "predict --block": _Spec((), {"--predictor": ("predictor", str, False), "-p": ("predictor", str, False),
                                  "--block": ("block", str, False)},
                             {"--json": "as_json"}, ("block", "predictor"), {"as_json": False}, _predict),
    "qt-score": _Spec(("space",), {"--lut-dir": ("lut_dir", Path, False), "--constraint": ("constraint", float, True),
                                   "--predictor": ("predictor", str, False), "--latency": ("latency", str, False),
                                   "--samples": ("samples", int, False), "--seed": ("seed", int, False),
                                   "--repeats": ("repeats", int, False)},
                      {"--json": "as_json"}, ("lut_dir",),
                      {"constraint": None, "predictor": None, "latency": None, "samples": 100_000, "seed": 0,
                       "repeats": 1, "as_json": False}, _qt_score),
}


def parse(argv: list[str]) -> tuple[_Spec, dict[str, Any]] | None:
    """The command's spec and its parameters, or ``None`` when the typer app should handle ``argv``."""
    if not argv or argv[0] not in _SPECS:
        return None
    block = argv[0] == "predict" and any(a == "--block" or a.startswith("--block=") for a in argv)
    spec = _SPECS["predict --block" if block else argv[0]]
    values: dict[str, Any] = dict(spec.defaults)
    given: set[str] = set()
    positional: list[str] = []
    it = iter(argv[1:])
    try:
        for tok in it:
            if tok.startswith("-") and tok != "-":
                name, eq, inline = tok.partition("=")
                if eq and not name.startswith("--"):
                    return None  # click reads -p=x as the value '=x'
                if name in spec.flags and not eq:
                    values[spec.flags[name]] = True
                    continue
                if name not in spec.options:
                    return None  # --help, --, unknown or abbreviated options: typer decides
                param, convert, repeatable = spec.options[name]
                raw = inline if eq else next(it)
                if not eq and raw.startswith("-") and raw != "-" and not _is_number(raw):
                    return None
                value = convert(raw)
                if repeatable:
                    values[param] = [*(values.get(param) or []), value] if param in given else [value]
                else:
                    values[param] = value
                given.add(param)
            else:
                positional.append(tok)
    except (StopIteration, ValueError, OverflowError):
        return None
    if len(positional) != len(spec.positional) or any(r not in given for r in spec.required):
        return None
    values.update(zip(spec.positional, positional))
    return spec, values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run_fast(argv: list[str]) -> bool:
    """Answer ``argv`` on the fast path if it is a table query this module understands; return whether it did."""
    parsed = parse(argv)
    if parsed is None:
        return False
    spec, values = parsed
    spec.run(**values)
    return True
