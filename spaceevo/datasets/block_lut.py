"""Read the public SpaceEvo block look-up tables (SPACEEVO.md section 5) and map rows to blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spaceevo.space import BlockConfig, Hyperspace, conv_out_hw, get_hyperspace

LUT_COLUMNS = ["config", "input_shape", "loss", "flops_m", "params_m", "latency_ms"]
#: the device each hyperspace's tables were measured on, named as its built-in predictor
DEVICE_PREDICTORS: dict[str, str] = {"onnxw": "vnni-ort-int8", "mobilew": "pixel4-tflite-int8"}
if TYPE_CHECKING:  # pandas loads only when a table is read, not for the file names and config strings
    import pandas as pd

_FILE_RE = re.compile(r"^stage(\d)_(\d)_(\d)\.csv$")


@dataclass(frozen=True)
class LutKey:
    """Identifies one table: hyperspace, stage (1..6), block-type digit and width-window digit."""

    hyperspace: str
    stage: int
    block: int
    window: int

    @property
    def filename(self) -> str:
        """The table's file name, ``stage{S}_{B}_{W}.csv``."""
        return f"stage{self.stage}_{self.block}_{self.window}.csv"


def lut_files(lut_dir: str | Path, hyperspace: str) -> dict[LutKey, Path]:
    """All tables of ``hyperspace`` under ``lut_dir`` (which may hold a ``<hyperspace>/`` folder).

    Parameters
    ----------
    lut_dir : str or Path
    hyperspace : str

    Returns
    -------
    dict of LutKey to Path

    Raises
    ------
    FileNotFoundError
        No table of ``hyperspace`` under ``lut_dir``.
    """
    root = Path(lut_dir)
    if (root / hyperspace).is_dir():
        root = root / hyperspace
    if not root.is_dir():
        raise FileNotFoundError(f"look-up-table directory {str(root)!r} does not exist")
    get_hyperspace(hyperspace)
    out = {}
    for path in sorted(root.iterdir()):
        m = _FILE_RE.match(path.name)
        if m:
            out[LutKey(hyperspace, *map(int, m.groups()))] = path
    if not out:
        raise FileNotFoundError(f"no stage{{S}}_{{B}}_{{W}}.csv tables in {str(root)!r}")
    return out


def read_lut(path: str | Path) -> "pd.DataFrame":
    """One table as a DataFrame with typed columns plus ``cin`` and ``hw`` from the input shape.

    Parameters
    ----------
    path : str or Path
        A ``stage{S}_{B}_{W}.csv`` file.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    df = pd.read_csv(path, header=None, names=LUT_COLUMNS, dtype={"config": str, "input_shape": str})
    if df.shape[1] != len(LUT_COLUMNS) or df["latency_ms"].isna().any():
        raise ValueError(f"{path}: expected {len(LUT_COLUMNS)} columns {LUT_COLUMNS} and no empty cells")
    shape = df["input_shape"].str.split("x", expand=True).astype(int)
    df["cin"], df["hw"] = shape[1], shape[2]
    return df


def parse_stage_config(text: str) -> list[tuple[int, int, float]]:
    """``'3#48#None_5#32#None'`` -> ``[(3, 48, 0.0), (5, 32, 0.0)]`` as (k, w, e) per block.

    Parameters
    ----------
    text : str

    Returns
    -------
    list of (int, int, float)
    """
    out = []
    for part in text.split("_"):
        k, w, e = part.split("#")
        out.append((int(k), int(w), 0.0 if e == "None" else float(e)))
    return out


def row_blocks(hyper: Hyperspace, key: LutKey, config: str, cin: int, hw: int) -> list[BlockConfig]:
    """Concrete blocks of one table row: the first carries the stage stride and the row's cin.

    Parameters
    ----------
    hyper : Hyperspace
    key : LutKey
    config : str
        The row's stage config (``parse_stage_config``).
    cin : int
    hw : int

    Returns
    -------
    list of BlockConfig
    """
    stage = hyper.stages[key.stage - 1]
    choice = hyper.block_choices[key.block]
    blocks = []
    for i, (k, w, e) in enumerate(parse_stage_config(config)):
        stride = stage.stride if i == 0 else 1
        blocks.append(BlockConfig(choice.type, hw, cin, w, k, e, stride, choice.act))
        hw, cin = conv_out_hw(hw, k, stride), w
    return blocks
