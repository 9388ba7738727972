"""The shape of a profile: a table of OIDs with their types, the way snmp_exporter's modules are data.

The engine walks exactly the columns listed here and GETs the scalars, nothing more; turning the rows
into samples is the job of pure functions per profile family (interfaces -> links, datacenter rows ->
attributed resources).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    INFO = "info"  # text, exposed as a label
    ENUM = "enum"  # integer with named values


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a conceptual table, walked by its numeric OID (no leading dot)."""

    name: str
    oid: str
    kind: Kind
    needs_v2: bool = False  # Counter64 columns do not exist in SNMPv1
    scale: Decimal | None = None
    enum: dict[int, str] = field(default_factory=dict)
    measure: str | None = None  # what the value means to the datacenter handler (see datacenter.measures)
    help: str = ""  # user profiles: the HELP text of the column's own metric


@dataclass(frozen=True, slots=True)
class Scalar:
    """One object GET by its full instance OID (no leading dot), e.g. 1.3.6.1.2.1.1.3.0."""

    name: str
    oid: str
    kind: Kind
    scale: Decimal | None = None  # user profiles: the sample is value x scale, exactly
    help: str = ""  # user profiles: the HELP text of the scalar's metric


@dataclass(frozen=True, slots=True)
class IndexPart:
    """One component of a table's index suffix, turned into a label (as snmp_exporter's `indexes`)."""

    label: str
    type: str = "integer"  # integer: one sub-identifier; string: length-prefixed octets; implied: the rest


@dataclass(frozen=True, slots=True)
class Lookup:
    """A label read from another column, at the row's index or at some of its index labels."""

    label: str
    column: str
    index: tuple[str, ...] = ()  # index labels forming the lookup column's suffix; empty: the whole suffix


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    columns: tuple[Column, ...] = ()
    scalars: tuple[Scalar, ...] = ()
    description: str = ""
    # Which pure function turns the rows into samples: interfaces, host_resources, ucd, entity_sensors,
    # or "table" for user profiles (measures, index labels and lookups drive it; their numeric scalars
    # are samples of their own, named as the columns are).
    family: str = "interfaces"
    resource: str = ""  # what a row is (storage, outlet, vm, sensor): names the label and the attribution rules
    indexes: tuple[IndexPart, ...] = ()
    lookups: tuple[Lookup, ...] = ()

    def columns_for(self, version: str) -> tuple[Column, ...]:
        if version == "1":
            return tuple(c for c in self.columns if not c.needs_v2)
        return self.columns
