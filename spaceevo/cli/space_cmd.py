"""``spaceevo space ...`` and ``spaceevo subnet ...``: inspect hyperspaces, spaces and subnets."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import JsonOpt, emit, table


def _space_or_hyperspace(name: str):
    """A SearchSpace for an encoding, or the Hyperspace for a bare hyperspace name."""
    from spaceevo.space import SearchSpace, get_hyperspace

    return get_hyperspace(name) if "-" not in name else SearchSpace.parse(name)


def _hyperspace_info(h) -> dict:
    return {
        "hyperspace": h.name, "device": h.device, "resolutions": list(h.resolutions),
        "lut_resolutions": list(h.lut_resolutions), "n_search_spaces": h.size,
        "block_types": [{"digit": i, "type": c.type, "kernel_sizes": list(c.kernel_sizes),
                         "expand_ratios": [float(e) for e in c.expand_ratios], "act": c.act}
                        for i, c in enumerate(h.block_choices)],
        "stages": [{"stage": s.name, "widths": list(s.widths), "window_size": s.window_size,
                    "n_windows": s.n_windows, "depths": list(s.depths), "stride": s.stride}
                   for s in h.all_stages],
    }


def register(app: typer.Typer) -> None:
    """Add the ``space`` and ``subnet`` command groups to ``app``."""
    space_app = typer.Typer(no_args_is_help=True, help="Hyperspaces and search spaces.")
    subnet_app = typer.Typer(no_args_is_help=True, help="Subnets of a search space.")
    app.add_typer(space_app, name="space")
    app.add_typer(subnet_app, name="subnet")

    @space_app.command("list")
    def space_list(as_json: bool = JsonOpt) -> None:
        """List the registered hyperspaces and their sizes."""
        from spaceevo.space import get_hyperspace, list_hyperspaces

        data = [_hyperspace_info(get_hyperspace(n)) for n in list_hyperspaces()]
        emit(data, as_json, lambda d: table("hyperspaces", ["name", "device", "search spaces", "block types"],
                                            [[x["hyperspace"], x["device"], f"{x['n_search_spaces']:,}",
                                              ", ".join(b["type"] for b in x["block_types"])] for x in d]))

    @space_app.command("show")
    def space_show(space: str = typer.Argument(..., help="hyperspace name (onnxw) or space (onnxw-151122-023231)"),
                   as_json: bool = JsonOpt) -> None:
        """Show a hyperspace's stages and windows, or a search space's stages and size."""
        obj = _space_or_hyperspace(space)
        if hasattr(obj, "stage_options"):
            data = obj.describe()
            emit(data, as_json, lambda d: table(
                f"{d['space']}: {d['n_subnets']:.3e} subnets, resolutions {d['resolutions']}",
                ["stage", "block", "act", "k", "e", "widths", "depths", "stride"],
                [[s["stage"], s["block"], s["act"], s["kernel_sizes"], s["expand_ratios"], s["widths"],
                  s["depths"], s["stride"]] for s in d["stages"]]))
        else:
            data = _hyperspace_info(obj)
            def render(d):
                table(f"{d['hyperspace']} ({d['device']}): {d['n_search_spaces']:,} search spaces",
                      ["stage", "widths", "window size", "windows", "depths", "stride"],
                      [[s["stage"], s["widths"], s["window_size"] or "-", s["n_windows"], s["depths"], s["stride"]]
                       for s in d["stages"]])
                table("block types", ["digit", "type", "k", "e", "act"],
                      [[b["digit"], b["type"], b["kernel_sizes"], b["expand_ratios"], b["act"]]
                       for b in d["block_types"]])
            emit(data, as_json, render)

    @subnet_app.command("info")
    def subnet_info(subnet: str, space: str = typer.Option(..., "--space", help="search space encoding"),
                    as_json: bool = JsonOpt) -> None:
        """Resolution, MACs, params and concrete blocks of a subnet."""
        from spaceevo.space import SearchSpace

        sp = SearchSpace.parse(space)
        data = sp.subnet_info(sp.parse_subnet(subnet))
        emit(data, as_json, lambda d: table(
            f"r={d['resolution']}  flops={d['flops_m']} M MACs  params={d['params_m']} M",
            ["stage", "type", "hw", "cin", "cout", "k", "e", "stride", "act"],
            [[b["stage"], b["type"], b["hw"], b["cin"], b["cout"], b["k"], f"{b['e']:g}", b["stride"], b["act"]]
             for b in d["blocks"]]))

    @subnet_app.command("sample")
    def subnet_sample(space: str = typer.Option(..., "--space"), n: int = typer.Option(5, "-n", min=0),
                      seed: int = typer.Option(0, "--seed"), as_json: bool = JsonOpt) -> None:
        """Sample subnets uniformly from a search space."""
        from spaceevo.space import SearchSpace

        sp = SearchSpace.parse(space)
        data = [str(s) for s in sp.sample(n, seed)]
        emit(data, as_json, lambda d: print("\n".join(d)))

    @subnet_app.command("export")
    def subnet_export(subnet: str, space: str = typer.Option(..., "--space"),
                      output: Path = typer.Option(..., "-o", "--output", help="FILE.onnx"),
                      seed: int = typer.Option(0, "--seed"), as_json: bool = JsonOpt) -> None:
        """Export a whole subnet (fixed stages included) as an FP32 ONNX model."""
        import onnx

        from spaceevo.space import SearchSpace, subnet_to_onnx

        sp = SearchSpace.parse(space)
        model = subnet_to_onnx(sp, sp.parse_subnet(subnet), seed)
        output.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(output))
        data = {"output": str(output), "nodes": len(model.graph.node), "bytes": output.stat().st_size}
        emit(data, as_json, lambda d: print(f"wrote {d['output']} ({d['nodes']} nodes, {d['bytes']:,} bytes)"))
