"""The SpaceEvo authors' published subnets (``search_result.yaml``), or the paper's example when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

# The published SEQnet@vnni-A0 subnet of the SpaceEvo paper (SPACEEVO.md section 4).
EXAMPLE_SPACE = "onnxw-151122-023231"
EXAMPLE_SUBNET = ("d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240#240#320_"
                  "e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160")


def published_subnets(path: str | Path | None = None, hyperspace: str | None = None) -> list[dict]:
    """The SpaceEvo authors' published subnets from ``search_result.yaml`` when it is found, else the example.

    Parameters
    ----------
    path : str or Path, optional
        The ``search_result.yaml`` to read. Without it the file is looked up at
        ``$SPACEEVO_SHARED_DATA/search_result.yaml``, then ``../shared/data/spaceevo/``.
    hyperspace : str, optional
        Keep only the subnets of this hyperspace (``onnxw`` or ``mobilew``).

    Returns
    -------
    list of dict
        ``name``, ``space``, ``subnet`` and ``source`` (the file read, or ``SPACEEVO.md``) per subnet.

    Raises
    ------
    FileNotFoundError
        ``path`` is given and does not exist.
    """
    import yaml

    candidates = [Path(path)] if path else []
    if os.environ.get("SPACEEVO_SHARED_DATA"):
        candidates.append(Path(os.environ["SPACEEVO_SHARED_DATA"]) / "search_result.yaml")
    candidates.append(Path.cwd().parent / "shared" / "data" / "spaceevo" / "search_result.yaml")
    if path and not Path(path).is_file():
        raise FileNotFoundError(f"--published {str(path)!r} does not exist")
    rows = [{"name": "SEQnet@vnni-A0", "space": EXAMPLE_SPACE, "subnet": EXAMPLE_SUBNET, "source": "SPACEEVO.md"}]
    for c in candidates:
        if c.is_file():
            doc = yaml.safe_load(c.read_text())
            spaces = doc["specific_supernet_encoding_dict"]
            rows = [{"name": name, "space": spaces[sp], "subnet": sn, "source": str(c)}
                    for name, (sp, sn) in doc["specific_subnet_encoding_dict"].items()]
            break
    if hyperspace is not None:
        rows = [r for r in rows if r["space"].split("-", 1)[0] == hyperspace]
    return rows
