"""The configuration as pure typed data.

Pydantic validates shapes and units field by field; references between sections (a link's commune,
a target's credentials, a profile name) are checked afterwards by `crossref.py`, so that every error
can be reported at once with its location.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sitivmon.config.secrets import Secret
from sitivmon.profiles.user import UserProfile
from sitivmon.units import parse_capacity_bytes_per_second, parse_duration

MAX_POLL_INTERVAL_S = 3600
"""Longest poll interval: a reading held longer than an hour would stand for a level nobody observed,
and usage accounting (sitivmon.usage.buckets) names intervals up to an hour exactly."""


def _at_most_an_hour(value: float) -> float:
    if value > MAX_POLL_INTERVAL_S:
        raise ValueError(f"a poll interval must be at most {MAX_POLL_INTERVAL_S}s (1h), got {value:g}s")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
PollInterval = Annotated[float, BeforeValidator(lambda v: _at_most_an_hour(parse_duration(v))), Field(gt=0)]
"""At most an hour. Features may refuse more (usage accounting refuses the intervals its store cannot
tell apart: sitivmon.usage.checks), in their own cross-checks."""
CapacityBytes = Annotated[int, BeforeValidator(parse_capacity_bytes_per_second)]

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{value!r} is not a valid id (lower-case letters, digits, '-', '_', '.')")
    return value


Identifier = Annotated[str, BeforeValidator(lambda v: _check_id(str(v)) if isinstance(v, str | int) else v)]


class PollSettings(Strict):
    interval: PollInterval = 60.0
    timeout: Duration = 5.0
    retries: int = Field(default=2, ge=0, le=10)
    max_repetitions: int = Field(default=25, ge=1, le=1000)
    concurrency: int = Field(default=200, ge=1, le=100_000)
    max_varbinds: int = Field(default=100_000, ge=1)
    jitter: float = Field(default=1.0, ge=0.0, le=1.0, description="share of the interval used to spread starts")

    @model_validator(mode="after")
    def _timeout_fits(self) -> PollSettings:
        if self.timeout > self.interval:
            raise ValueError(f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)")
        return self


class PollOverrides(Strict):
    interval: PollInterval | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    max_repetitions: int | None = Field(default=None, ge=1, le=1000)
    max_varbinds: int | None = Field(default=None, ge=1)

    def over(self, base: PollSettings) -> PollSettings:
        values = base.model_dump()
        values.update({k: v for k, v in self.model_dump().items() if v is not None})
        return PollSettings.model_validate(values)


class AuthProtocol(StrEnum):
    MD5 = "MD5"
    SHA = "SHA"
    SHA224 = "SHA224"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"


class PrivProtocol(StrEnum):
    DES = "DES"
    AES = "AES"
    AES128 = "AES128"
    AES192 = "AES192"
    AES256 = "AES256"


def _norm_proto(value: Any) -> Any:
    return value.upper().replace("-", "") if isinstance(value, str) else value


class Credential(Strict):
    """SNMP credentials: v1/v2c community, or a v3 USM user (noAuthNoPriv, authNoPriv, authPriv)."""

    version: Literal["1", "2c", "3"]
    community: Secret | None = None
    username: str | None = None
    auth_protocol: Annotated[AuthProtocol | None, BeforeValidator(_norm_proto)] = None
    auth_password: Secret | None = None
    priv_protocol: Annotated[PrivProtocol | None, BeforeValidator(_norm_proto)] = None
    priv_password: Secret | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value).lower().removeprefix("v") if isinstance(value, int | str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Credential:
        if self.version in ("1", "2c"):
            if self.community is None:
                raise ValueError(f"SNMP v{self.version} needs 'community'")
            if self.username or self.auth_protocol or self.priv_protocol:
                raise ValueError(f"SNMP v{self.version} takes only 'community', not v3 user settings")
            return self
        if self.community is not None:
            raise ValueError("SNMP v3 takes a USM user, not 'community'")
        if not self.username:
            raise ValueError("SNMP v3 needs 'username'")
        if (self.auth_protocol is None) != (self.auth_password is None):
            raise ValueError("'auth_protocol' and 'auth_password' go together")
        if (self.priv_protocol is None) != (self.priv_password is None):
            raise ValueError("'priv_protocol' and 'priv_password' go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise ValueError("privacy (authPriv) needs authentication too")
        for name in ("auth_password", "priv_password"):
            secret = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < 8:
                raise ValueError(f"'{name}' must have at least 8 characters (RFC 3414)")
        return self

    @property
    def security_level(self) -> str:
        if self.version != "3":
            return "community"
        if self.priv_protocol:
            return "authPriv"
        return "authNoPriv" if self.auth_protocol else "noAuthNoPriv"


class Commune(Strict):
    id: Identifier
    name: str
    insee: Annotated[str, Field(pattern=r"^(\d{5}|2[AB]\d{3})$")]

    @field_validator("insee", mode="before")
    @classmethod
    def _insee_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if 10000 <= value <= 99999:
                return str(value)
            # A code with a leading zero (Ain, Aisne, ...) lost it, or YAML read 01053 as octal.
            raise ValueError('write an INSEE code with a leading zero as a quoted string, e.g. "01053"')
        return value


SHARED = "shared"


class Target(Strict):
    name: Identifier
    address: str
    credentials: str
    profiles: list[str] = Field(default_factory=lambda: ["interfaces"], min_length=1)
    poll: PollOverrides = PollOverrides()
    commune: str = SHARED
    ifalias_parser: bool = False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, port = split_address(value, 161)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        if not host:
            raise ValueError("empty host")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # The SNMP library takes addresses only; resolving names at poll time would put DNS on
            # the polling path. A name here would pass `check` and fail every poll.
            raise ValueError(f"{host!r} is not an IP address (host names are not resolved)") from None
        return value

    @property
    def host(self) -> str:
        return split_address(self.address, 161)[0]

    @property
    def port(self) -> int:
        return split_address(self.address, 161)[1]


def split_address(value: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address."""
    text = value.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"missing ']' in address {value!r}")
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after ']' in address {value!r}")
        port = rest.removeprefix(":")
        if port and not port.isdigit():
            raise ValueError(f"invalid port in address {value!r}")
        return host, int(port) if port else default_port
    try:
        ipaddress.IPv6Address(text)
        return text, default_port
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit():
        raise ValueError(f"invalid port in address {value!r}")
    return host, int(port)


class InterfaceSelector(Strict):
    """How a link finds its interface on the device; exactly one key, re-resolved on every poll."""

    name: str | None = None
    alias: str | None = None
    descr: str | None = None
    index: int | None = Field(default=None, ge=1)

    @field_validator("name", "alias", "descr", mode="before")
    @classmethod
    def _text_only(cls, value: Any, info: ValidationInfo) -> Any:
        """`descr: 4` is the number 4 to YAML, and `descr: 010` is 8: a selector is matched as text,
        so a number is refused with the way out rather than turned back into a string."""
        if isinstance(value, int | float):  # bool is an int too (`name: yes`)
            raise ValueError(
                f'write it in quotes, e.g. {info.field_name}: "…": unquoted, YAML reads it as a number '
                "(or a boolean) and may change it (010 becomes 8, 1.10 becomes 1.1, yes becomes true)"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> InterfaceSelector:
        given = [k for k in ("name", "alias", "descr", "index") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of name, alias, descr, index")
        return self

    @property
    def key(self) -> str:
        return next(k for k in ("name", "alias", "descr", "index") if getattr(self, k) is not None)

    @property
    def wanted(self) -> str:
        return str(getattr(self, self.key))

    def describe(self) -> str:
        return f"{self.key}={self.wanted}"


class Side(StrEnum):
    COMMUNE = "commune"
    CORE = "core"


class Link(Strict):
    id: Identifier
    commune: str
    target: str
    interface: InterfaceSelector
    side: Side = Side.COMMUNE
    capacity: CapacityBytes | None = None
    maintenance: bool = False
    description: str = ""
    circuit: str | None = None  # carrier circuit id (from the config, or parsed from ifAlias)


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`, or `:PORT` for every address): the port is required."""
    if ":" not in value:
        raise ValueError(f"listen address {value!r} needs a port, e.g. 127.0.0.1:9811")
    host, port = split_address(value, 0)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range in listen address {value!r}")
    return host or "0.0.0.0", port


class LoggingSettings(Strict):
    format: Literal["plain", "json"] = "plain"
    level: Literal["debug", "info", "warning", "error"] = "info"


class CoreConfig(Strict):
    """The core of the configuration: what polling, normalisation and exposition need.

    Features (usage, allocation, traps, MQTT, datacenter attribution, API) add their own sections in
    the composition root's full config (`sitivmon.app.config.SitivmonConfig`), which subclasses this
    one; the core reads only these fields, so it never imports a feature.
    """

    listen: str = "127.0.0.1:9811"
    state_dir: Path = Path("./var")
    timezone: str = "Europe/Paris"
    log: LoggingSettings = LoggingSettings()
    poll: PollSettings = PollSettings()
    credentials: dict[str, Credential] = Field(default_factory=dict)
    communes: list[Commune] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    profiles: dict[str, UserProfile] = Field(default_factory=dict)  # user profiles, inline
    profile_files: list[Path] = Field(default_factory=list)  # YAML files of user profiles

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    def commune_by_id(self) -> dict[str, Commune]:
        return {c.id: c for c in self.communes}

    def target_by_name(self) -> dict[str, Target]:
        return {t.name: t for t in self.targets}

    def poll_settings(self, target: Target) -> PollSettings:
        return target.poll.over(self.poll)
