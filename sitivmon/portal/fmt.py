"""How figures read for people: French by default (`1 234,56 €`, dates in Europe/Paris), English on request.

Pure functions of exact values (int cents, Decimal text from the report): nothing here rounds money
through a float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

LANGS = ("fr", "en")
NBSP = "\u00a0"  # between groups of digits and before the currency sign, so a figure never breaks a line
NNBSP = "\u202f"


def group(digits: str, sep: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return sep.join(parts)


def money(cents: int, lang: str = "fr") -> str:
    """`123456` -> `1 234,56 €` (fr) or `€1,234.56` (en); exact, from integer cents."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    if lang == "en":
        return f"{sign}€{group(str(units), ',')}.{rest:02d}"
    return f"{sign}{group(str(units), NBSP)},{rest:02d}{NBSP}€"


def number(value: Decimal | int | str, lang: str = "fr", places: int | None = None) -> str:
    """A decimal figure with the language's separators; `places` rounds half-even for display only."""
    d = Decimal(value)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{d:f}"
    sign = "-" if text.startswith("-") else ""
    text = text.lstrip("-")
    whole, _, frac = text.partition(".")
    if lang == "en":
        return sign + group(whole, ",") + (f".{frac}" if frac else "")
    return sign + group(whole, NBSP) + (f",{frac}" if frac else "")


def percent(share: Decimal | int | str, lang: str = "fr", places: int = 1) -> str:
    """A share in [0, 1] as a percentage: `0.9123` -> `91,2 %` (fr) or `91.2%` (en)."""
    value = number(Decimal(share) * 100, lang, places)
    return f"{value}{NBSP}%" if lang == "fr" else f"{value}%"


_UNITS = (("", 1), ("k", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12), ("P", 10**15))


PREFIXED = {"bytes", "bytes_per_second", "bit/s", "joules", "watts"}  # SI prefixes read well on these, not on hours


def scaled(value: Decimal | int | str, unit: str, lang: str = "fr") -> str:
    """A quantity for reading: `1 234 567 890 bytes` -> `1,23 Go`; hours stay whole numbers with groups."""
    d = Decimal(value)
    names = UNIT_NAMES[lang]
    if unit not in PREFIXED:
        shown = number(d, lang, 0 if abs(d) >= 100 else 2)
        return f"{shown}{NBSP}{names.get(unit, unit)}".rstrip()
    prefix, factor = _UNITS[0]
    for p, f in _UNITS:
        if abs(d) >= f:
            prefix, factor = p, f
    shown = number(d / factor, lang, 2 if factor > 1 else 0)
    return f"{shown}{NBSP}{prefix}{names.get(unit, unit)}"


UNIT_NAMES = {
    "fr": {"bytes": "o", "bytes_per_second": "o/s", "joules": "J", "vcpu_hours": "vCPU·h", "vcpu·h": "vCPU·h",
           "GiB_hours": "Gio·h", "GiB·h": "Gio·h", "ratio": ""},
    "en": {"bytes": "B", "bytes_per_second": "B/s", "joules": "J", "vcpu_hours": "vCPU·h", "vcpu·h": "vCPU·h",
           "GiB_hours": "GiB·h", "GiB·h": "GiB·h", "ratio": ""},
}  # fmt: skip

MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
}  # fmt: skip


def month_name(label: str, lang: str = "fr") -> str:
    """`2026-10` -> `octobre 2026` / `October 2026`."""
    year, month = label.split("-")
    return f"{MONTHS[lang][int(month) - 1]} {year}"


SHORT_MONTHS = {
    "fr": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}


def short_month(label: str, lang: str = "fr") -> str:
    """`2026-10` -> `oct. 26`: the axis label of a chart."""
    year, month = label.split("-")
    return f"{SHORT_MONTHS[lang][int(month) - 1]} {year[2:]}"


def when(instant: float | str | None, timezone: str = "Europe/Paris", lang: str = "fr") -> str:
    """A moment as people in the syndicate read it: local time, day first in French."""
    if instant is None or instant == "":
        return "—"
    if isinstance(instant, str):
        dt = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    else:
        dt = datetime.fromtimestamp(instant, ZoneInfo("UTC"))
    local = dt.astimezone(ZoneInfo(timezone))
    if lang == "en":
        return local.strftime("%Y-%m-%d %H:%M")
    return local.strftime("%d/%m/%Y %H:%M")
