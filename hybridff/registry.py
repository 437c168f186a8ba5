"""One registry by name for every pluggable part (charge methods, QM engines, ML backends,
samplers).

A :class:`Registry` maps a name to an object, or to a lazy ``"module:attr"`` reference that is
imported on first lookup (so an optional dependency is only needed when its entry is used).
Other packages add entries through an entry-point group (``hybridff.charge_methods``,
``hybridff.qm_engines``, ``hybridff.ml_backends``, ``hybridff.samplers``); the group is
read on the first lookup of a name the registry does not hold, or when its names are listed,
and an entry point is loaded only when its name is looked up. A name hybridff itself holds
is never replaced by an entry point. An unknown name raises
:class:`~hybridff.exceptions.UnknownNameError` listing the known ones.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from hybridff.exceptions import OptionalDependencyError, UnknownNameError

T = TypeVar("T")


class _Lazy:
    """A ``"module:attr"`` reference (a string), or an entry point (anything with ``load``),
    resolved on first use."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def resolve(self) -> Any:
        if not isinstance(self.target, str):
            return self.target.load()
        module_name, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj

    def __repr__(self) -> str:
        return f"<lazy {getattr(self.target, 'value', self.target)}>"


class Registry(MutableMapping[str, T], Generic[T]):
    """Name -> object, filled by :meth:`register`, lazy references and an entry-point group.

    ``kind`` names an entry in messages ("charge method"); ``group`` is the entry-point group
    other packages fill; ``entries`` are the built-in ones, objects or ``"module:attr"``
    strings. It is a mapping: ``name in registry``, ``registry[name]``, ``list(registry)``
    (built-in, registered and entry-point names, in that order).
    """

    def __init__(self, kind: str, group: str | None = None,
                 entries: dict[str, T | str] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Any] = {}
        self._plugins: dict[str, _Lazy] | None = None  # read from the group when first needed
        for name, value in (entries or {}).items():
            self._entries[name] = _Lazy(value) if isinstance(value, str) else value

    # ---------------------------------------------------------------- filling

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` as ``name``; without ``obj``, a decorator that does so."""
        if obj is not None:
            self._entries[name] = obj
            return obj

        def decorator(func: T) -> T:
            self._entries[name] = func
            return func

        return decorator

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attr"`` as ``name``, imported when first looked up."""
        self._entries[name] = _Lazy(target)

    def _discover(self) -> dict[str, _Lazy]:
        """Entry points of the group by name (not loaded), read once."""
        if self._plugins is None:
            found = importlib.metadata.entry_points(group=self.group) if self.group else ()
            self._plugins = {ep.name: _Lazy(ep) for ep in found}
        return self._plugins

    # ---------------------------------------------------------------- lookup

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            plugin = self._discover().get(name)
            if plugin is None:
                plural = self.kind.split()[-1] + "s"
                raise UnknownNameError(f"unknown {self.kind} {name!r}; known {plural}: "
                                       f"{', '.join(sorted(self)) or 'none'}")
            self._entries[name] = plugin
        value = self._entries[name]
        if isinstance(value, _Lazy):
            try:
                resolved = value.resolve()
            except ImportError as exc:
                if isinstance(value.target, str):  # hybridff's own entry: its error as it is
                    raise
                dist = getattr(value.target.dist, "name", None) or "its package"
                raise OptionalDependencyError(
                    f"the {self.kind} {name!r} ({self.group} entry point {value.target.value} "
                    f"of {dist}) could not be imported: {exc}; reinstall {dist}") from exc
            if self._entries.get(name) is value:  # importing it may have registered it itself
                self._entries[name] = resolved
            value = self._entries[name]
        return value

    def names(self) -> list[str]:
        """Every known name: built-in and registered ones, then those of entry points."""
        return list(iter(self))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or (isinstance(name, str) and name in self._discover())

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from (name for name in self._discover() if name not in self._entries)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __setitem__(self, name: str, obj: T) -> None:
        self.register(name, obj)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={self.names()})"

