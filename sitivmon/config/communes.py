"""Communes named the way operators write them: by id, name or INSEE code, accents and case aside.

Names are compared folded: accents stripped, case folded and every run of spaces, hyphens,
apostrophes or underscores made one hyphen, so `Pierre Bénite`, `pierre-benite` and `PIERRE-BENITE`
are the same commune, and `Vénissieux-web` starts with the prefix `venissieux`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sitivmon.config.model import SHARED, Commune

_SEPARATORS = re.compile(r"[\s\-_'’]+")


def fold(text: str, *, trim: bool = True) -> str:
    """Comparable form of a name. `trim=False` keeps leading/trailing separators, so that a prefix
    `VEN-` does not also match `VENI...`."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = _SEPARATORS.sub("-", stripped.casefold())
    return folded.strip("-") if trim else folded


class CommuneResolver:
    """A commune by id, name or INSEE code, written any way an operator might."""

    def __init__(self, communes: Iterable[Commune]) -> None:
        self._by_key: dict[str, str] = {fold(SHARED): SHARED}
        for c in communes:
            for key in (c.id, c.name, c.insee):
                self._by_key.setdefault(fold(key), c.id)

    def resolve(self, text: str) -> str | None:
        return self._by_key.get(fold(text))
