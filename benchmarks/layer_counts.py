"""Structure figures of the library (issue 13), read from the source with ``ast`` (nothing is imported).

* private cross-imports: an import in library code (``spaceevo/``: the layers ``space/``, ``latency/``,
  ``datasets/``, ``predictors/``, ``search/`` and the CLI and quick start beside them) of a private module ``spaceevo.<pkg>._x`` (absolute, relative, or
  ``from spaceevo.<pkg> import _x``) by a module outside package ``spaceevo.<pkg>`` itself (a subpackage,
  e.g. ``search.supernet`` taking ``search._tables``, counts as outside);
* function-level intra-project imports: imports of ``spaceevo`` modules inside a function body, in the
  library layers (``space`` ... ``search``) and, separately, in ``spaceevo/`` (CLI, quick start);
* the longest functions of ``spaceevo/cli/`` (lines, nested functions excluded).

Run from the project root::

    python benchmarks/layer_counts.py [--list]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> package name (the library is one tree, as installed; benchmarks/ and tests/ are not library code)
FOLDERS = {"spaceevo": "spaceevo"}
LAYERS = ("space", "latency", "datasets", "predictors", "search")


def library_modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file of every library module (tests and benchmarks excluded)."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> list[str]:
    """Absolute names of the modules an import statement loads (``from p import m`` yields ``p.m`` too)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = _package_of(module, path).split(".")
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def _is_private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def private_cross_imports(root: Path = ROOT) -> list[tuple[str, int, str]]:
    """``(importer, line, private module)`` for each import of another package's private module."""
    modules = library_modules(root)
    found = []
    for module, path in modules.items():
        package = _package_of(module, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in imported_modules(node, module, path):
                known = target in modules or target.rpartition(".")[0] in modules
                if not target.startswith("spaceevo.") or not known:
                    continue
                parts = target.split(".")
                # the first private part names a private module (or a private name inside one)
                for i, part in enumerate(parts):
                    if part.startswith("_") and not part.startswith("__"):
                        owner, private = ".".join(parts[:i]), ".".join(parts[:i + 1])
                        if private in modules and owner != package:
                            found.append((module, node.lineno, private))
                        break
    return sorted(set(found))


def function_level_imports(root: Path = ROOT) -> list[tuple[str, int, str]]:
    """``(module, line, imported module)`` for each intra-project import inside a function."""
    modules = library_modules(root)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    target = imported_modules(node, module, path)[0]
                    if target == "spaceevo" or target.startswith("spaceevo."):
                        found.append((module, node.lineno, target))
    return sorted(set(found))


def _own_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of ``fn`` from ``def`` to its last line, less the lines of the functions defined inside it."""
    inner = [n for n in ast.walk(fn) if n is not fn and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = set()
    for n in inner:
        nested.update(range(min([n.lineno, *(d.lineno for d in n.decorator_list)]), n.end_lineno + 1))
    return len(set(range(fn.lineno, fn.end_lineno + 1)) - nested)


def longest_functions(folder: str = "spaceevo/cli", root: Path = ROOT, top: int = 5) -> list[tuple[int, str]]:
    """The ``top`` longest functions under ``folder``: lines from ``def`` to the last line, less the lines of
    the functions nested in them (a command's closure counts for itself, not for the ``register`` holding it)."""
    sizes = []
    for path in sorted((root / folder).rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes.append((_own_lines(fn), f"{path.relative_to(root)}:{fn.lineno} {fn.name}"))
    return sorted(sizes, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list every finding")
    args = parser.parse_args(argv)
    private = private_cross_imports()
    lazy = function_level_imports()
    in_layers = [f for f in lazy if f[0].split(".")[1] in LAYERS]
    pairs = {(importer, target) for importer, _line, target in private}
    print(f"private cross-imports in library code: {len(private)} statements, "
          f"{len(pairs)} (module, private module) pairs")
    if args.list:
        for importer, line, target in private:
            print(f"  {importer}:{line} -> {target}")
    print(f"function-level intra-project imports: {len(in_layers)} in the library layers, "
          f"{len(lazy) - len(in_layers)} in spaceevo/ (CLI, quick start)")
    if args.list:
        for module, line, target in lazy:
            print(f"  {module}:{line} -> {target}")
    print("longest CLI functions:")
    for size, where in longest_functions():
        print(f"  {size:4d} lines  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
