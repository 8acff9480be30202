"""One registry class for every kind of named part: editors, attacks, backbones, segmenters, tasks, lock baselines.

An entry registers itself where it is defined (``@EDITORS.register("keyed-filter")``, or the package's own
decorator that calls ``Registry.add``). A registry imports the modules that hold its entries on first use, not
before, so that ``modellock --help`` and the key commands stay light:

- the modules named in ``modules``;
- every module (and subpackage) in the folder of ``package`` but the ``helpers`` and names starting with ``_``:
  adding an entry is adding one file to that folder;
- the modules of installed plugins: entry points of the group ``modellock.<group>`` (a plugin package names
  its module in its ``pyproject.toml``: ``[project.entry-points."modellock.attacks"] mine = "my_pkg.attack"``).

An unknown name gets one standard line, ``unknown attack 'x' (known: a, b, c)``, of the registry's error class.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from typing import Any, Callable, Iterator

from ..errors import ModelLockError

GROUP_PREFIX = "modellock."


class Registry:
    """Named entries of one kind, their modules imported on first use (see the module docstring)."""

    def __init__(self, kind: str, *, package: str | None = None, helpers: tuple[str, ...] = (),
                 modules: tuple[str, ...] = (), group: str | None = None, error: type[Exception] = ModelLockError,
                 order: Callable[[Any], Any] | None = None, known_suffix: str = ""):
        self.kind, self.package, self.helpers, self.modules = kind, package, tuple(helpers), tuple(modules)
        self.group = GROUP_PREFIX + group if group else None
        self.error, self.order, self.known_suffix = error, order, known_suffix
        self._entries: dict[str, Any] = {}
        self._loaded = False

    # ------------------------------------------------------------------ registering
    def add(self, name: str, entry: Any, same: Callable[[Any], Any] | None = None) -> Any:
        """Register ``entry`` under ``name``; ValueError when another entry has that name (``same(entry)`` tells
        two registrations of one thing apart from two things, e.g. a module imported twice)."""
        ident = same or (lambda e: e)
        if name in self._entries and ident(self._entries[name]) is not ident(entry):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget the entry ``name`` (tests that register a stand-in take it out again)."""
        self._entries.pop(name, None)

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: register the decorated object under ``name`` and return it unchanged."""
        def wrap(entry):
            self.add(name, entry)
            return entry

        return wrap

    # ------------------------------------------------------------------ finding
    def plugin_modules(self) -> list[str]:
        """The modules this registry imports on first use, in order (see the module docstring)."""
        found = list(self.modules)
        if self.package:
            package = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                if not info.name.startswith("_") and info.name not in self.helpers:
                    found.append(f"{self.package}.{info.name}")
        return found

    def load(self) -> "Registry":
        """Import every module that holds entries (once; later calls return at once)."""
        if self._loaded:
            return self
        self._loaded = True  # before importing: a module that asks the registry while it loads sees it loading
        for module in self.plugin_modules():
            importlib.import_module(module)
        if self.group:
            for point in importlib.metadata.entry_points(group=self.group):
                point.load()
        return self

    def names(self) -> list[str]:
        """Every registered name: in ``order`` of the entries when given, else alphabetically."""
        self.load()
        if self.order is None:
            return sorted(self._entries)
        return sorted(self._entries, key=lambda n: (self.order(self._entries[n]), n))

    def get(self, name: str) -> Any:
        """The entry called ``name``; the registry's error (``unknown KIND 'name' (known: ...)``) otherwise."""
        self.load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown(name)) from None

    def unknown(self, name) -> str:
        """The line that says ``name`` is not registered, with the names that are."""
        return f"unknown {self.kind} {name!r} (known: {', '.join(self.names())}{self.known_suffix})"

    def __contains__(self, name) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self._entries[n]) for n in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries{'' if self._loaded else ', not loaded'})"
