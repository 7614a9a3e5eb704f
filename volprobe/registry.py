"""One registry shape for everything a user picks by name: models, controls and blind baselines.

A :class:`Registry` maps names to classes. Classes arrive two ways, and both end in the same table:

- **entry points** (the way plugins arrive): a distribution declares, in its ``pyproject.toml``::

      [project.entry-points."volprobe.models"]
      their_model = "their_package.adapter:TheirAdapter"

  and after ``pip install their-package`` the name works everywhere (``probe run --model their_model``,
  ``probe models``). volprobe declares its own built-ins the same way (groups ``volprobe.models``,
  ``volprobe.controls``, ``volprobe.baselines``). An entry point is loaded (its module imported) only
  when its name is asked for or when every entry is listed;
- **decorators**, for code that is already imported (a notebook, a test): ``@registry.register``.

Every registered class carries its name in the class attribute ``name``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Callable, Generic, TypeVar, overload

from volprobe.errors import VolprobeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named classes of one kind, registered by decorator or found through an entry-point group.

    Args:
        kind: what the entries are, for messages (``model``, ``control``, ``baseline``).
        group: the entry-point group (``volprobe.models``).
        error: the exception raised for an unknown or clashing name (a :class:`VolprobeError`).
        check: called with each class as it is registered (raise ``error`` to refuse it).
    """

    def __init__(self, kind: str, group: str, error: type[VolprobeError] = VolprobeError,
                 check: Callable[[type], None] | None = None):
        self.kind, self.group, self.error, self._check = kind, group, error, check
        self._classes: dict[str, type[T]] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None

    # -- registering -----------------------------------------------------------------------------
    @overload
    def register(self, cls: type[T]) -> type[T]: ...

    @overload
    def register(self, cls: str) -> Callable[[type[T]], type[T]]: ...

    def register(self, cls):
        """Class decorator: ``@registry.register`` (name from ``cls.name``) or ``@registry.register("name")``."""
        if isinstance(cls, str):
            name = cls

            def named(klass: type[T]) -> type[T]:
                klass.name = name  # type: ignore[attr-defined]
                return self._add(klass)
            return named
        return self._add(cls)

    def _add(self, cls: type[T]) -> type[T]:
        name = getattr(cls, "name", "")
        if not name:
            raise self.error(f"{cls.__name__}: a {self.kind} needs a name (class attribute 'name')")
        if self._check is not None:
            self._check(cls)
        known = self._classes.get(name)
        if known is not None and known is not cls and _qualname(known) != _qualname(cls):
            raise self.error(f"{self.kind} name {name!r} registered twice ({_qualname(known)} and {_qualname(cls)})")
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget a registered name (its entry point, if any, is found again on the next :meth:`get`)."""
        self._classes.pop(name, None)

    # -- finding ---------------------------------------------------------------------------------
    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """The group's entry points by name (read once from the installed distributions' metadata)."""
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in metadata.entry_points(group=self.group)}
        return self._entry_points

    def names(self) -> list[str]:
        """Every name: registered ones and those of entry points not loaded yet, sorted."""
        return sorted(set(self._classes) | set(self.entry_points()))

    def get(self, name: str) -> type[T]:
        """The class registered as ``name`` (loading its entry point if needed)."""
        if name not in self._classes:
            ep = self.entry_points().get(name)
            if ep is None:
                raise self.error(f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or 'none'}")
            self._load(ep)
        return self._classes[name]

    def __contains__(self, name: str) -> bool:
        return name in self._classes or name in self.entry_points()

    def classes(self) -> list[type[T]]:
        """Every class, sorted by name (each entry point loaded)."""
        return [self.get(n) for n in self.names()]

    def _load(self, ep: metadata.EntryPoint) -> None:
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin: say which, do not crash the whole command
            raise self.error(f"{self.kind} {ep.name!r} (entry point {ep.value} in group {self.group}) "
                             f"could not be loaded: {type(exc).__name__}: {exc}") from exc
        if getattr(cls, "name", None) != ep.name:
            raise self.error(f"entry point {ep.name!r} of group {self.group} gives {ep.value}, whose name is "
                             f"{getattr(cls, 'name', None)!r}; the two must agree")
        self._add(cls)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
