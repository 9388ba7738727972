"""How a place in a configuration document is written in error messages: `links[3].commune`."""

from __future__ import annotations

from collections.abc import Iterable


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
