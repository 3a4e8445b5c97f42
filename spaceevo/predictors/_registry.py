"""Where predictors live: built-ins shipped in ``spaceevo/predictors/builtin/`` and ``$SPACEEVO_HOME/predictors``."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ._cache import spaceevo_home

if TYPE_CHECKING:  # the bundle imports pandas and scikit-learn: loaded only to load or save a predictor
    from ._bundle import LatencyPredictor

_SUFFIXES = (".json.gz", ".json")


def builtin_dir() -> Path:
    """Folder of the predictors shipped with the package.

    Returns
    -------
    Path
    """
    return Path(__file__).resolve().parent / "builtin"


def user_dir() -> Path:
    """``$SPACEEVO_HOME/predictors`` (default ``~/.cache/spaceevo/predictors``).

    Returns
    -------
    Path
    """
    return spaceevo_home() / "predictors"


def _name_of(path: Path) -> str | None:
    for suf in _SUFFIXES:
        if path.name.endswith(suf):
            return path.name[: -len(suf)]
    return None


def _files() -> list[tuple[str, str, Path]]:
    out = []
    for origin, folder in (("builtin", builtin_dir()), ("user", user_dir())):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                name = _name_of(p)
                if name and p.is_file():
                    out.append((name, origin, p))
    return out


def _peek_manifest(path: Path) -> dict:
    import gzip  # stdlib, but not on the warm query path

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw.decode("utf-8")).get("manifest", {})


def list_predictors(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the known predictors (user ones and built-ins), sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns (e.g. ``"*-int8"``); only matching names are listed.

    Returns
    -------
    list of str
    """
    names = sorted({name for name, _origin, _path in _files()})
    if filter is None:
        return names
    patterns = [filter] if isinstance(filter, str) else list(filter)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def describe_predictors() -> list[dict]:
    """One row per predictor file: name, origin (builtin|user), path, device, dtype, estimator, unit_kind, created_at.

    A file that cannot be read is listed with its ``error`` instead of the manifest fields.

    Returns
    -------
    list of dict
        Built-ins first, then user predictors, each sorted by file name.
    """
    rows = []
    for name, origin, path in _files():
        row = {"name": name, "origin": origin, "path": str(path)}
        try:
            man = _peek_manifest(path)
            row.update({"device": man.get("device"), "dtype": man.get("dtype"), "estimator": man.get("estimator"),
                        "unit_kind": man.get("unit_kind", "block"), "created_at": man.get("created_at")})
        except Exception as exc:  # a broken file is listed, not fatal
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def predictor_path(name_or_path: str | Path) -> Path:
    """Resolve a registered name (user dir first, then built-ins) or a file path.

    Parameters
    ----------
    name_or_path : str or Path

    Returns
    -------
    Path

    Raises
    ------
    FileNotFoundError
        Neither a file nor a registered name (the message lists the registered ones).
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    found = {name: path for name, _o, path in reversed(_files())}  # user overrides builtin
    key = str(name_or_path)
    if key in found:
        return found[key]
    names = sorted(found)
    raise FileNotFoundError(f"predictor {key!r} is neither a file nor a registered name; registered predictors: "
                            f"{names or 'none'} (built-ins in {builtin_dir()}, user ones in {user_dir()})")


def load_predictor(name_or_path: str | Path) -> "LatencyPredictor":
    """Load a predictor by registered name or path: a block predictor, or a kernel predictor of ONNX models.

    Parameters
    ----------
    name_or_path : str or Path

    Returns
    -------
    LatencyPredictor or KernelLatencyPredictor
        As the file's ``unit_kind`` says.

    Raises
    ------
    FileNotFoundError
        Neither a file nor a registered name (the message lists the registered ones).
    PredictorFileError
        The file is corrupt, not a predictor, or of an incompatible format version.
    """
    from ._bundle import LatencyPredictor  # lazy: pandas and scikit-learn, not for a name look-up

    path = predictor_path(name_or_path)
    try:
        kind = _peek_manifest(path).get("unit_kind", "block")
    except Exception:  # a corrupt file: the bundle's loader names the problem
        kind = "block"
    if kind == "kernel":
        from ._kernel_predictor import KernelLatencyPredictor

        return KernelLatencyPredictor.load(path)
    return LatencyPredictor.load(path)


def install_predictor(pred: "LatencyPredictor", name: str) -> Path:
    """Save ``pred`` into the user directory under ``name``.

    Parameters
    ----------
    pred : LatencyPredictor
    name : str
        A plain file name (no ``/``).

    Returns
    -------
    Path
        ``$SPACEEVO_HOME/predictors/<name>.json.gz``.

    Raises
    ------
    ValueError
        ``name`` is not a plain file name.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name={name!r} must be a plain file name (no '/')")
    return pred.save(user_dir() / f"{name}.json.gz")


__all__ = ["builtin_dir", "describe_predictors", "install_predictor", "list_predictors", "load_predictor",
           "predictor_path", "user_dir"]
