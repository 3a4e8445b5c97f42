"""Every layer's public API is documented (NumPy style) and listed in the README's API section."""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("torch", reason="spaceevo.search.supernet is part of the API (the train extra)")

import api_reference as api  # noqa: E402


@pytest.mark.parametrize("module", [m for m, _about in api.LAYERS])
def test_public_names_documented(module):
    mod = importlib.import_module(module)
    undocumented, incomplete = [], []
    for name in api.public_names(module):
        obj = getattr(mod, name)
        if api._kind(obj) in ("class", "function") and not (obj.__doc__ or "").strip():
            undocumented.append(name)
        if api.missing_sections(obj):
            incomplete.append(f"{name} ({', '.join(api.missing_sections(obj))})")
    assert not undocumented, f"{module}: no docstring: {undocumented}"
    assert not incomplete, f"{module}: NumPy sections missing: {incomplete}"


def test_missing_sections_are_found():
    def f(a: int) -> int:
        """Twice ``a``."""
        return 2 * a

    def g(a: int) -> int:
        """Twice ``a``.

        Parameters
        ----------
        a : int

        Returns
        -------
        int
        """
        return 2 * a

    assert api.missing_sections(f) == ["Parameters", "Returns"]
    assert api.missing_sections(g) == []


def test_readme_lists_the_api():
    assert api.readme_section() == api.generate(), "README's API section is stale: python tests/api_reference.py --write"
