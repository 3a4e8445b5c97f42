"""The layer rules of the README, enforced: import-linter's contracts (``[importlinter]`` in setup.cfg), no
private cross-imports, imports at module top.

The contracts are linted on the checkout itself (``lint-imports`` from the project root does the same). Each
rule is also checked against a copy with a violation planted, so a check that cannot fail would fail here.
"""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"
CONTRACTS = {"layers", "supernet", "utilities", "private"}
# intra-project imports that stay inside functions on purpose (module -> imported module)
LAZY_ALLOWED = {
    ("spaceevo.latency._adb", "spaceevo.latency._tflite"),  # TensorFlow, the tflite extra
    ("spaceevo.predictors._query", "spaceevo.predictors.spaceevo_builtin"),  # pandas: not on the warm fast path
    ("spaceevo.predictors._query", "spaceevo.predictors._features"),  # not on the warm subnet query (start-up)
    ("spaceevo.predictors._registry", "spaceevo.predictors._bundle"),  # pandas/scikit-learn: not for name look-ups
    ("spaceevo.predictors._registry", "spaceevo.predictors._kernel_predictor"),  # the same, for kernel predictors
}


def _layer_counts():
    spec = importlib.util.spec_from_file_location("layer_counts", ROOT / "benchmarks" / "layer_counts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _library_copy(dest: Path) -> Path:
    """Copy the library's sources (``spaceevo/``) into ``dest/spaceevo``; returns ``dest``."""
    shutil.copytree(ROOT / "spaceevo", dest / "spaceevo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                        "builtin"))
    return dest


def _lint(tree: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, str(SETUP_CFG), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def test_contracts_hold():
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    assert {s.split(":")[-1] for s in cfg.sections() if s.startswith("importlinter:contract:")} == CONTRACTS
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in res.stdout


def test_contracts_catch_violations(tmp_path):
    bad = _library_copy(tmp_path / "bad")
    with open(bad / "spaceevo" / "space" / "_ops.py", "a") as f:  # a lower layer importing a higher one
        f.write("\nimport spaceevo.search  # noqa\n")
    with open(bad / "spaceevo" / "predictors" / "_metrics.py", "a") as f:  # another package's private module
        f.write("\nfrom spaceevo.latency._units import BlockUnit  # noqa\n")
    with open(bad / "spaceevo" / "plotting.py", "a") as f:  # a shared utility importing a layer
        f.write("\nimport spaceevo.space  # noqa\n")
    res = _lint(bad)
    assert res.returncode != 0
    assert "Contracts: 1 kept, 3 broken." in res.stdout, res.stdout
    assert "spaceevo.space._ops -> spaceevo.search" in res.stdout
    assert "spaceevo.predictors._metrics -> spaceevo.latency._units" in res.stdout


def test_no_private_cross_imports():
    # stricter than import-linter's private_modules: a subpackage (search.supernet) counts as outside too
    assert _layer_counts().private_cross_imports(ROOT) == []


def test_private_cross_import_check_fails_on_one(tmp_path):
    counts = _layer_counts()
    for folder in counts.FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "builtin"))
    with open(tmp_path / "spaceevo" / "search" / "supernet" / "_quant.py", "a") as f:
        f.write("\nfrom .._tables import QTTables  # noqa\n")
    found = [(module, target) for module, _line, target in counts.private_cross_imports(tmp_path)]
    assert found == [("spaceevo.search.supernet._quant", "spaceevo.search._tables")]


def test_intra_project_imports_at_module_top():
    found = {(m, target) for m, _line, target in _layer_counts().function_level_imports(ROOT)
             if m.split(".")[1] in ("space", "latency", "datasets", "predictors", "search")}
    assert found == LAZY_ALLOWED, "import at the top of the module, or justify a heavy runtime in LAZY_ALLOWED"
