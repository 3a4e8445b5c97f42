"""One registry idiom for every plug-in kind (blocks, hyperspaces, zoo families, kernels, samplers, fusion rules,
backends, estimators).

Each layer keeps a ``Registry`` and exposes it in timm's style: ``register_<x>`` adds an entry,
``list_<x>s(filter=None)`` gives the sorted names (``filter``: shell-style patterns, e.g. ``"*conv*"``),
``get_<x>(name)`` gives the registered entry or raises a ``ValueError`` naming the bad name and the choices.
Kinds whose entries are instantiated with options add ``create_<x>(name, **opts)``.

A shared utility below every layer: it imports nothing of ``spaceevo``.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Generic, Iterator, Sequence, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one plug-in kind.

    Parameters
    ----------
    kind : str
        What an entry is, for error messages (``"backend"``, ``"block type"``).
    plural : str, optional
        Plural of ``kind`` (default ``kind + "s"``).
    normalize : callable, optional
        ``(name, registered names) -> key``: an alias rule applied before the look-up.
    error : str, optional
        Template of the unknown-name message, with ``{name!r}``, ``{kind}``, ``{plural}``, ``{choices}``
        (comma-separated) and ``{names}`` (a list); default
        ``"unknown {kind} {name!r}; valid {plural}: {choices}"``.
    """

    def __init__(self, kind: str, plural: str | None = None, normalize: Callable[[str, dict], str] | None = None,
                 error: str = "unknown {kind} {name!r}; valid {plural}: {choices}") -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._normalize = normalize
        self._error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add (or replace) ``entry`` under ``name``.

        Parameters
        ----------
        name : str
            The name users pick it by.
        entry : object
            What ``get`` returns.

        Returns
        -------
        object
            ``entry`` itself (so that ``register`` can end a decorator).
        """
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T | None:
        """Remove ``name`` (a plug-in's or a test's clean-up); returns its entry, or None if it was absent."""
        return self._entries.pop(name, None)

    def names(self, filter: str | Sequence[str] | None = None) -> list[str]:
        """Sorted names, optionally only those matching ``filter``.

        Parameters
        ----------
        filter : str or sequence of str, optional
            Shell-style patterns (``fnmatch``); a name is kept when it matches any of them.

        Returns
        -------
        list of str
        """
        names = sorted(self._entries)
        if filter is None:
            return names
        patterns = [filter] if isinstance(filter, str) else list(filter)
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    def key(self, name: str) -> str:
        """The registered name that ``name`` stands for (after the alias rule).

        Raises
        ------
        ValueError
            ``name`` is not registered; the message lists the registered names.
        """
        key = self._normalize(name, self._entries) if self._normalize else name
        if key not in self._entries:
            names = self.names()
            raise ValueError(self._error.format(name=name, kind=self.kind, plural=self.plural,
                                                choices=", ".join(names), names=names))
        return key

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Parameters
        ----------
        name : str

        Returns
        -------
        object
            The registered entry.

        Raises
        ------
        ValueError
            ``name`` is not registered; the message lists the registered names.
        """
        return self._entries[self.key(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


__all__ = ["Registry"]
