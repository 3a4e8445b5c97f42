"""PNG figures for every layer: pyplot on the Agg backend (no screen needed) and one way to save.

A shared utility below every layer (it imports nothing of ``spaceevo``), so ``datasets``, ``predictors`` and
``search`` draw their figures the same way without importing the command line's package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, imported on first use (matplotlib is slow to import).

    Returns
    -------
    module
        ``matplotlib.pyplot``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder created) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        The PNG file.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``path``.
    """
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


__all__ = ["pyplot", "save_figure"]
