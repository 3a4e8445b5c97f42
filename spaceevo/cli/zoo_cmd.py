"""``spaceevo zoo``: write random ONNX variants of classic CNN families (the model zoo) with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import JsonOpt, emit, table


def register(app: typer.Typer) -> None:
    """Add ``zoo`` to ``app``."""

    @app.command("zoo")
    def zoo(out: Path = typer.Option(..., "-o", "--out", help="folder to write the models and manifest.json to"),
            families: list[str] = typer.Option(["all"], "--families", help="family names (repeatable) or 'all'"),
            per_family: int = typer.Option(5, "--per-family", help="models per family (1..99)"),
            seed: int = typer.Option(0, "--seed", help="base seed; train and validate on different seeds"),
            resolution: Optional[int] = typer.Option(None, "--resolution",
                                                     help="fixed input resolution (default: drawn from 160/192/224)"),
            tiny: bool = typer.Option(False, "--tiny", help="an eighth of the widths, depth 1 (quick checks)"),
            as_json: bool = JsonOpt) -> None:
        """Write random ONNX variants of AlexNet, VGG, ResNet, ... RegNet (the model zoo) and a manifest."""
        from spaceevo.space import generate_zoo

        fams = [f for item in families for f in item.split(",") if f]
        man = generate_zoo(out, "all" if fams == ["all"] else fams, per_family, seed, resolution, tiny)
        data = {"out": str(out), "models": len(man["models"]), "families": man["families"], "seed": seed,
                "entries": [{k: m[k] for k in ("name", "family", "seed", "resolution", "macs", "params", "nodes")}
                            for m in man["models"]]}
        emit(data, as_json, lambda d: table(f"{d['models']} zoo models -> {d['out']}",
                                            ["model", "family", "resolution", "MMACs", "params (M)", "nodes"],
                                            [[m["name"], m["family"], m["resolution"], f"{m['macs'] / 1e6:.1f}",
                                              f"{m['params'] / 1e6:.2f}", m["nodes"]] for m in d["entries"]]))
