"""User-defined profiles written in YAML, in the spirit of snmp_exporter's generator modules.

A user profile is data: numeric OIDs, a type, an optional scale and a `measure` telling the datacenter
handler what the value means (power, energy, vCPUs...). It is validated when the configuration is
checked (`sitivmon check`), every problem with its location, so that a typo in an OID is an error at
load time rather than an empty table at poll time. Compiled profiles prefix their column names with the
profile name, so two profiles (or a profile and a built-in one) can never collide in a poll's tables.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sitivmon.profiles.model import Column, IndexPart, Kind, Lookup, Profile, Scalar
from sitivmon.yamlread import DocumentRefused, read_yaml

Problem = tuple[tuple[str | int, ...], str]

_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*)){1,127}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# measure -> the kinds a column must have to carry it.
MEASURES: dict[str, tuple[Kind, ...]] = {
    "name": (Kind.INFO,),  # names the row: label value, subject id, attribution key
    "power_watts": (Kind.GAUGE,),
    "energy_joules": (Kind.COUNTER,),
    "vcpus": (Kind.GAUGE,),
    "memory_bytes": (Kind.GAUGE,),
    "storage_size_bytes": (Kind.GAUGE,),
    "storage_used_bytes": (Kind.GAUGE,),
    "temperature_celsius": (Kind.GAUGE,),
    "current_amperes": (Kind.GAUGE,),
    "power_state": (Kind.ENUM, Kind.INFO),  # enum codes, or text such as VMware's "poweredOn"
}


def _oid(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().removeprefix(".")
        if not _OID.match(text):
            raise ValueError(f"{value!r} is not a numeric OID (e.g. 1.3.6.1.4.1.318.1.1.26.9.4.3.1.3)")
        return text
    raise ValueError("an OID is written as text, e.g. '1.3.6.1.2.1.1.3.0'")


def _scale(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("scale must be a number")
    try:
        scale = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"scale {value!r} is not a number") from None
    if not scale.is_finite() or scale == 0:
        raise ValueError("scale must be a finite, non-zero number")
    return scale


def _name(value: Any) -> Any:
    if isinstance(value, str) and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name (letters, digits, '_', not starting with a digit)")
    return value


Oid = Annotated[str, BeforeValidator(_oid)]
Name = Annotated[str, BeforeValidator(_name)]
Scale = Annotated[Decimal | None, BeforeValidator(_scale)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserColumn(_Strict):
    name: Name
    oid: Oid
    type: Kind
    scale: Scale = None
    enum: dict[int, str] = Field(default_factory=dict)
    measure: Literal[
        "name", "power_watts", "energy_joules", "vcpus", "memory_bytes", "storage_size_bytes",
        "storage_used_bytes", "temperature_celsius", "current_amperes", "power_state",
    ] | None = None
    needs_v2: bool = False
    help: str = ""


class UserScalar(_Strict):
    name: Name
    oid: Oid
    type: Kind
    scale: Scale = None
    help: str = ""


class UserIndex(_Strict):
    label: Name
    type: Literal["integer", "string", "implied"] = "integer"


class UserLookup(_Strict):
    label: Name
    column: Name
    index: list[Name] = Field(default_factory=list)


class UserProfile(_Strict):
    """One profile: a table (columns sharing an index) and/or scalars, with their meaning."""

    description: str = ""
    resource: Literal["outlet", "vm", "storage", "sensor", "device"] = "device"
    indexes: list[UserIndex] = Field(default_factory=list)
    lookups: list[UserLookup] = Field(default_factory=list)
    columns: list[UserColumn] = Field(default_factory=list)
    scalars: list[UserScalar] = Field(default_factory=list)


def profile_problems(profile: UserProfile) -> Iterator[Problem]:
    """What pydantic cannot see field by field: references between columns, kinds versus measures."""
    if not profile.columns and not profile.scalars:
        yield (), "a profile needs at least one column or scalar"
    names = [c.name for c in profile.columns] + [s.name for s in profile.scalars]
    dup = {n for n, k in Counter(names).items() if k > 1}
    for i, c in enumerate(profile.columns):
        if c.name in dup:
            yield ("columns", i, "name"), f"duplicate column {c.name!r}"
        if c.enum and c.type is not Kind.ENUM:
            yield ("columns", i, "enum"), "'enum' values only go with type 'enum'"
        if c.measure is not None and c.type not in MEASURES[c.measure]:
            wanted = " or ".join(repr(k.value) for k in MEASURES[c.measure])
            yield ("columns", i, "measure"), f"measure {c.measure!r} needs type {wanted}, not {c.type.value!r}"
        if c.scale is not None and c.type in (Kind.INFO, Kind.ENUM):
            yield ("columns", i, "scale"), f"a {c.type.value} column cannot be scaled"
    for i, s in enumerate(profile.scalars):
        if s.name in dup:
            yield ("scalars", i, "name"), f"duplicate scalar {s.name!r}"
        if s.scale is not None and s.type in (Kind.INFO, Kind.ENUM):
            yield ("scalars", i, "scale"), f"a {s.type.value} scalar cannot be scaled"
    measures = Counter(c.measure for c in profile.columns if c.measure)
    for i, c in enumerate(profile.columns):
        if c.measure and measures[c.measure] > 1:
            yield ("columns", i, "measure"), f"measure {c.measure!r} is given to more than one column"
    columns = {c.name for c in profile.columns}
    index_labels = [x.label for x in profile.indexes]
    for i, x in enumerate(profile.indexes):
        if x.type == "implied" and i != len(profile.indexes) - 1:
            yield ("indexes", i, "type"), "only the last index can be 'implied'"
    for i, lk in enumerate(profile.lookups):
        if lk.column not in columns:
            yield ("lookups", i, "column"), f"unknown column {lk.column!r}"
        for j, label in enumerate(lk.index):
            if label not in index_labels:
                yield ("lookups", i, "index", j), f"unknown index label {label!r}"
        if lk.label in index_labels:
            yield ("lookups", i, "label"), f"label {lk.label!r} is already an index label"


def compile_profile(name: str, profile: UserProfile) -> Profile:
    """The engine's view of a user profile; column names are prefixed with `<profile>:`."""
    return Profile(
        name=name,
        description=profile.description,
        family="table",
        resource=profile.resource,
        columns=tuple(
            Column(
                f"{name}:{c.name}", c.oid, c.type, needs_v2=c.needs_v2, scale=c.scale, enum=dict(c.enum),
                measure=c.measure, help=c.help,
            )
            for c in profile.columns
        ),
        scalars=tuple(Scalar(f"{name}:{s.name}", s.oid, s.type, s.scale, s.help) for s in profile.scalars),
        indexes=tuple(IndexPart(x.label, x.type) for x in profile.indexes),
        lookups=tuple(Lookup(lk.label, f"{name}:{lk.column}", tuple(lk.index)) for lk in profile.lookups),
    )


class ProfileFileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_fmt(loc)}: {msg}" for loc, msg in problems))


def _fmt(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_profiles(data: Any) -> dict[str, UserProfile]:
    """A mapping `{profile name: profile}` (a profile file, or the config's `profiles:` section)."""
    if isinstance(data, Mapping) and set(data) == {"profiles"}:
        data = data["profiles"]
    if not isinstance(data, Mapping):
        raise ProfileFileError([((), "a profile file is a mapping of profile names to profiles")])
    out: dict[str, UserProfile] = {}
    problems: list[Problem] = []
    for key, body in data.items():
        name = str(key)
        if not _NAME.match(name):
            problems.append(((name,), f"{name!r} is not a valid profile name"))
            continue
        try:
            out[name] = UserProfile.model_validate(body)
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key"
                problems.append(((name, *err["loc"]), msg))
            continue
        problems.extend(((name, *loc), msg) for loc, msg in profile_problems(out[name]))
    if problems:
        raise ProfileFileError(problems)
    return out


def load_profile_file(path: Path) -> dict[str, UserProfile]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileFileError([((), f"cannot read {path}: {exc.strerror}")]) from None
    try:
        data, _ = read_yaml(text)  # bounded: aliases, size, duplicate keys
    except DocumentRefused as exc:
        raise ProfileFileError([((), str(issue)) for issue in exc.issues]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileFileError([((), f"YAML syntax error{where}")]) from None
    return parse_profiles(data)
