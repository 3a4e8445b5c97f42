"""Shared fixtures: the public SpaceEvo data beside the project, and tiny temporary paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPACEEVO_SHARED_DATA", REPO.parent / "shared" / "data" / "spaceevo"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data/spaceevo``; tests that need it skip (saying why) where it is absent."""
    if not (SHARED_DATA / "block_lut").is_dir():
        pytest.skip(f"public SpaceEvo data not found at {SHARED_DATA} (set SPACEEVO_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lut_dir(shared_data: Path) -> Path:
    """The block look-up-table folder with ``onnxw/`` and ``mobilew/``."""
    return shared_data / "block_lut"


@pytest.fixture(scope="session")
def _session_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spaceevo-home")


@pytest.fixture(autouse=True)
def _isolated_home(_session_home: Path, monkeypatch) -> None:
    """Compiled query caches and user predictors go to a per-session temporary ``$SPACEEVO_HOME``."""
    monkeypatch.setenv("SPACEEVO_HOME", str(_session_home))
