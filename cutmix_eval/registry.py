"""One registry implementation for every kind of named thing the toolkit offers.

Models, datasets, CAM methods, OOD scores, corruptions and training methods are each a
:class:`Registry`: a name (plus aliases) -> entry table with the same rules everywhere.

* Registering a name (or alias) twice is a programming error: ``ValueError`` naming the
  kind and the name.
* Looking up an unknown name is the user's mistake: :class:`~cutmix_eval.errors.UserError`
  with one line, ``unknown <kind> 'x'; did you mean 'y'? (known: a, b, c)``; the
  "did you mean" part appears only when some registered name is close.
* Listing takes a shell-style wildcard (``names("cifar*")``) and gives names in
  registration order, or sorted for a registry built with ``sort=True``; aliases are
  never listed.

A shared unit at the bottom of the layers: it imports nothing of the package but
``errors``, and nothing heavy, so building the command line's parsers stays cheap.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from cutmix_eval.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` (``"dataset"``, ``"OOD score"``...) by name.

    ``sort``: list names alphabetically instead of in registration order.
    ``ignore_case``: look names and aliases up case-insensitively (they are listed as registered).
    ``note``: said after the known names when a name is unknown (e.g. other ways to name one).
    """

    def __init__(self, kind: str, *, sort: bool = False, ignore_case: bool = False, note: str = ""):
        self.kind = kind
        self.sort = sort
        self.ignore_case = ignore_case
        self.note = note
        self._entries: dict[str, T] = {}  # name as registered -> entry, in registration order
        self._lookup: dict[str, str] = {}  # name or alias (case-folded with ignore_case) -> name

    def _key(self, name: str) -> str:
        return name.lower() if self.ignore_case else name

    def register(self, name: str, entry: T, aliases: Iterable[str] = ()) -> T:
        """Add ``entry`` under ``name`` and its ``aliases``; returns ``entry`` (decorators return it)."""
        for key in (name, *aliases):
            if self._key(key) in self._lookup:
                raise ValueError(f"{self.kind} {key!r} registered twice")
        self._entries[name] = entry
        for key in (name, *aliases):
            self._lookup[self._key(key)] = name
        return entry

    def get(self, name: str) -> T:
        """The entry of ``name`` or one of its aliases; a one-line :class:`UserError` if unknown."""
        found = self._lookup.get(self._key(name))
        if found is None:
            raise UserError(self._unknown(name))
        return self._entries[found]

    def _unknown(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(self._key(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        note = f"; {self.note}" if self.note else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known)}{note})"

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (not aliases) matching the shell-style ``pattern``."""
        found = [name for name in self._entries if fnmatch.fnmatch(name, pattern)]
        return sorted(found) if self.sort else found

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in listing order."""
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        """The names, in listing order (as a dict iterates its keys)."""
        return iter(self.names())


def parse_options(text: str, what: str) -> tuple[str, dict[str, Any]]:
    """``"name:depth=56,alpha=0.5,bottleneck=true"`` -> ``("name", {"depth": 56, "alpha": 0.5,
    "bottleneck": True})``: how an architecture or a dataset is named with settings of its own.

    Values are parsed as int, float, bool (true/false) or left as strings; ``what`` names the
    kind of thing in the one-line error.
    """
    name, _, rest = text.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"cannot parse {what} {text!r}: expected NAME or NAME:key=value,...")
        kwargs[key.strip()] = _parse_value(value.strip())
    return name.strip(), kwargs


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
