"""The allocation file (keys and projects) and the reports API section, with located errors.

The file is read with YAML numbers kept as `Decimal` (never float), validated in two steps: pydantic for
the shape, then checks against the syndicate's communes. Every error names where it is
(`keys.population.givors: ...`, `projects[2].basis: ...`) so that `sitivmon check` can point at it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sitivmon.allocation.arithmetic import euros_to_cents, exact
from sitivmon.config.model import Commune
from sitivmon.config.secrets import Secret
from sitivmon.usage.registry import INDICATORS, AllocationRule, IndicatorRegistry, NotABasis
from sitivmon.yamlread import DocumentRefused, format_loc, read_yaml

DEFAULT_COVERAGE_THRESHOLD = Decimal("0.95")






class AllocationConfigError(ValueError):
    """Every problem found in an allocation file, each one located; nothing is computed from it."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = list(errors)
        super().__init__("\n".join(f"{source}: {e}" for e in self.errors))


# ---------------------------------------------------------------- raw shape (pydantic)


class _PartModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    share: Decimal | str
    basis: str
    fallback: str | None = None
    min_coverage: Decimal | None = None


class _ProjectModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    budget: Decimal | None = None
    annual_budget: Decimal | None = None
    basis: str | None = None
    parts: list[_PartModel] | None = None
    communes: list[str] | None = None
    fallback: str | None = None
    min_coverage: Decimal | None = None
    description: str | None = None


class _AllocationModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    coverage_threshold: Decimal = DEFAULT_COVERAGE_THRESHOLD
    keys: dict[str, dict[str, Decimal | str]] = Field(default_factory=dict)
    projects: list[_ProjectModel] = Field(default_factory=list)


# ---------------------------------------------------------------- validated config


@dataclass(frozen=True, slots=True)
class Basis:
    """How a project's budget is split: by a fixed key, or by a usage indicator (and direction)."""

    kind: Literal["key", "usage"]
    key: str | None = None
    indicator: str | None = None
    direction: str | None = None

    def __str__(self) -> str:
        if self.kind == "key":
            return f"key:{self.key}"
        return f"usage:{self.indicator}" + (f":{self.direction}" if self.direction else "")


@dataclass(frozen=True, slots=True)
class AllocationKey:
    """A committee key: each listed commune's share as a fraction of 1; the shares sum to exactly 1."""

    name: str
    shares: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class BasisPart:
    """One part of a project's budget ("part fixe, part variable"), split by its own basis."""

    weight: Decimal  # fraction of the budget; a project's parts sum to exactly 1
    basis: Basis
    fallback: str | None
    min_coverage: Decimal


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    budget_cents: int  # the monthly budget (for an annual budget: its twelfth, see `budget_for`)
    basis: Basis  # the first part's basis (the only one for a single-basis project)
    communes: tuple[str, ...]
    fallback: str | None
    min_coverage: Decimal
    description: str | None = None
    parts: tuple[BasisPart, ...] = ()  # empty: one part, `basis` for the whole budget
    annual_budget_cents: int | None = None

    @property
    def basis_parts(self) -> tuple[BasisPart, ...]:
        return self.parts or (BasisPart(Decimal(1), self.basis, self.fallback, self.min_coverage),)

    @property
    def mixed(self) -> bool:
        return len(self.parts) > 1

    def budget_for(self, month: str) -> int:
        """The month's budget in cents. An annual budget gives each month its twelfth in whole cents and
        the remaining cents, one each, to the first months of the year: the twelve add up to the cent."""
        if self.annual_budget_cents is None:
            return self.budget_cents
        month_index = int(month[5:7])  # 1..12; the label was validated by parse_month
        base, rest = divmod(self.annual_budget_cents, 12)
        return base + (1 if month_index <= rest else 0)

    def year_to_date_cents(self, month: str) -> int:
        """The budget of January up to and including `month`."""
        year = month[:4]
        return sum(self.budget_for(f"{year}-{m:02d}") for m in range(1, int(month[5:7]) + 1))

    @property
    def basis_text(self) -> str:
        """`usage:storage`, or for a mixed project `40 % key:population + 60 % usage:traffic_volume`."""
        if not self.mixed:
            return str(self.basis)
        return " + ".join(f"{percent_text(part.weight)} {part.basis}" for part in self.parts)


@dataclass(frozen=True, slots=True)
class AllocationConfig:
    keys: Mapping[str, AllocationKey]
    projects: tuple[Project, ...]
    coverage_threshold: Decimal


class _DecimalLoader(yaml.SafeLoader):
    """A YAML loader that reads floats as Decimal, so `0.2345` never passes through binary floating point."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        return text
    return value if value.is_finite() else text


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _loc(parts: Sequence[int | str]) -> str:
    return format_loc(parts) or "(top level)"


SHARE_DECIMALS = 30
"""Decimals a share may have: any sum of shares then stays far inside `arithmetic.EXACT_DIGITS`."""

_PERCENT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")


def parse_share(value: Decimal | str) -> Decimal:
    """A share as a fraction of 1 from `0.2345`, `"0.2345"` or `"23.45%"` (Decimal, exact)."""
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if m:
            with exact():  # 35 digits must not become 28 silently
                return parse_share(Decimal(m.group(1)) / 100)
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(
                f"{value!r} is not a share: write a decimal like 0.2345 or a percentage like 23.45%"
            ) from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"share must be a non-negative number, got {value}")
    if value > 1:
        raise ValueError(f"share {value} is more than 1: write {value}% for a percentage")
    if value and value.as_tuple().exponent < -SHARE_DECIMALS:  # type: ignore[operator]
        raise ValueError(f"share {value} has more than {SHARE_DECIMALS} decimals")
    return value


def percent_text(value: Decimal) -> str:
    """An exact share as a percentage (`0.125` -> `12.5 %`), never rounded."""
    with exact():
        return f"{value.scaleb(2).normalize():f} %"


def parse_basis(text: str, indicators: IndicatorRegistry = INDICATORS) -> Basis:
    """`key:<name>` or `usage:<indicator>[:<direction>]`; raises ValueError with a readable reason.

    Which indicators may split a budget, and by which directions, is their registry entry's
    (`sitivmon.usage.registry`); an indicator known there but not a cost driver is refused with its reason.
    """
    parts = text.strip().split(":")
    if parts[0] == "key" and len(parts) == 2 and parts[1]:
        return Basis(kind="key", key=parts[1])
    if parts[0] == "usage" and len(parts) in (2, 3) and parts[1]:
        indicator = parts[1]
        direction = parts[2] if len(parts) == 3 else None
        spec = indicators.get(indicator)
        if spec is not None and isinstance(spec.allocation, NotABasis):
            raise ValueError(spec.allocation.reason)
        if spec is None or not isinstance(spec.allocation, AllocationRule):
            raise ValueError(f"unknown indicator {indicator!r} (known: {', '.join(indicators.bases())})")
        allowed = spec.allocation.directions
        if direction is not None and direction not in allowed:
            if not allowed:
                raise ValueError(f"{indicator} has no direction, got {direction!r}")
            raise ValueError(f"direction {direction!r} is not valid for {indicator} ({', '.join(allowed)})")
        return Basis(kind="usage", indicator=indicator, direction=direction)
    raise ValueError(f"{text!r}: basis must be key:<name> or usage:<indicator>[:<direction>]")


def _check_keys(raw: _AllocationModel, known: Mapping[str, Commune], errors: list[str]) -> dict[str, AllocationKey]:
    keys: dict[str, AllocationKey] = {}
    for name, raw_shares in raw.keys.items():
        shares: dict[str, Decimal] = {}
        ok = True
        for commune, value in raw_shares.items():
            where = f"keys.{name}.{commune}"
            if commune not in known:
                errors.append(f"{where}: unknown commune {commune!r}")
                ok = False
                continue
            try:
                shares[commune] = parse_share(value)
            except ValueError as exc:
                errors.append(f"{where}: {exc}")
                ok = False
        if not raw_shares:
            errors.append(f"keys.{name}: a key needs at least one commune")
            ok = False
        if ok:
            with exact():  # never rounded: shares summing to 1 only at 28 digits are not 100 %
                total = sum(shares.values(), Decimal(0))
            if total != 1:
                errors.append(f"keys.{name}: shares sum to {percent_text(total)}, not exactly 100 %")
                ok = False
        if ok:
            keys[name] = AllocationKey(name=name, shares=shares)
    return keys


def _check_budget(where: str, p: _ProjectModel, errors: list[str]) -> tuple[int, int | None]:
    """(monthly cents, annual cents or None): exactly one of `budget` and `annual_budget`."""
    if (p.budget is None) == (p.annual_budget is None):
        errors.append(f"{where}: give exactly one of budget (monthly) or annual_budget")
        return 0, None
    field_name, value = ("budget", p.budget) if p.budget is not None else ("annual_budget", p.annual_budget)
    assert value is not None
    cents = 0
    try:
        cents = euros_to_cents(value)
    except ValueError as exc:
        errors.append(f"{where}.{field_name}: {exc}")
    if value < 0:
        errors.append(f"{where}.{field_name}: must not be negative, got {value}")
    if p.annual_budget is not None:
        return cents // 12, cents
    return cents, None


def _check_part(
    where: str, basis_text: str, fallback: str | None, min_coverage: Decimal | None, raw: _AllocationModel,
    errors: list[str], indicators: IndicatorRegistry,
) -> tuple[Basis | None, Decimal]:
    basis: Basis | None = None
    try:
        basis = parse_basis(basis_text, indicators)
    except ValueError as exc:
        errors.append(f"{where}.basis: {exc}")
    if basis is not None and basis.kind == "key" and basis.key not in raw.keys:
        errors.append(f"{where}.basis: unknown key {basis.key!r} (defined: {', '.join(raw.keys) or 'none'})")
    if fallback is not None:
        if basis is not None and basis.kind == "key":
            errors.append(f"{where}.fallback: only a usage basis falls back; {basis_text!r} is already a key")
        elif fallback not in raw.keys:
            defined = ", ".join(raw.keys) or "none"
            errors.append(f"{where}.fallback: unknown key {fallback!r} (defined: {defined})")
    elif basis is not None and basis.kind == "usage":
        errors.append(f"{where}.fallback: a usage basis needs a fallback key for months without usable data")
    min_cov = min_coverage if min_coverage is not None else raw.coverage_threshold
    if not (0 <= min_cov <= 1):
        errors.append(f"{where}.min_coverage: must be between 0 and 1, got {min_cov}")
    return basis, min_cov


def _check_parts(
    where: str, p: _ProjectModel, raw: _AllocationModel, errors: list[str], indicators: IndicatorRegistry
) -> list[BasisPart] | None:
    """The project's parts: its one `basis`, or `parts` whose shares sum to exactly 100 %."""
    if (p.basis is None) == (p.parts is None):
        errors.append(f"{where}: give exactly one of basis or parts")
        return None
    if p.basis is not None:
        basis, min_cov = _check_part(where, p.basis, p.fallback, p.min_coverage, raw, errors, indicators)
        return None if basis is None else [BasisPart(Decimal(1), basis, p.fallback, min_cov)]
    assert p.parts is not None
    if len(p.parts) < 2:
        errors.append(f"{where}.parts: give at least two parts (or a single basis)")
        return None
    parts: list[BasisPart] = []
    ok = True
    for k, part in enumerate(p.parts):
        at = f"{where}.parts[{k}]"
        try:
            weight = parse_share(part.share)
        except ValueError as exc:
            errors.append(f"{at}.share: {exc}")
            ok = False
            continue
        if weight <= 0:
            errors.append(f"{at}.share: must be more than 0 %")
            ok = False
        # The project's fallback is the default of its usage parts; a key part never falls back.
        inherited = p.fallback if part.basis.strip().startswith("usage:") else None
        fallback = part.fallback if part.fallback is not None else inherited
        min_coverage = part.min_coverage if part.min_coverage is not None else p.min_coverage
        basis, min_cov = _check_part(at, part.basis, fallback, min_coverage, raw, errors, indicators)
        if basis is None:
            ok = False
            continue
        parts.append(BasisPart(weight, basis, fallback, min_cov))
    if ok:
        with exact():
            total = sum((part.weight for part in parts), Decimal(0))
        if total != 1:
            errors.append(f"{where}.parts: shares sum to {percent_text(total)}, not exactly 100 %")
            ok = False
    return parts if ok else None


def _check_project(
    i: int,
    p: _ProjectModel,
    raw: _AllocationModel,
    keys: Mapping[str, AllocationKey],
    known: Mapping[str, Commune],
    errors: list[str],
    indicators: IndicatorRegistry,
) -> Project | None:
    where = f"projects[{i}]"
    n_before = len(errors)
    budget_cents, annual_cents = _check_budget(where, p, errors)
    parts = _check_parts(where, p, raw, errors, indicators)
    if p.communes is not None:
        if not p.communes:
            errors.append(f"{where}.communes: an empty list leaves nobody to pay")
        seen: set[str] = set()
        for j, c in enumerate(p.communes):
            if c not in known:
                errors.append(f"{where}.communes[{j}]: unknown commune {c!r}")
            elif c in seen:
                errors.append(f"{where}.communes[{j}]: {c!r} is listed twice")
            seen.add(c)
    if len(errors) > n_before or parts is None:
        return None

    # Who pays: the listed communes, else a single key's communes, else every member.
    first = parts[0].basis
    if p.communes is not None:
        communes = tuple(p.communes)
    elif len(parts) == 1 and first.kind == "key" and first.key is not None and first.key in keys:
        communes = tuple(c for c in known if c in keys[first.key].shares)
    else:
        communes = tuple(known)
    for k, part in enumerate(parts):
        at = where if len(parts) == 1 else f"{where}.parts[{k}]"
        for label, key_name in (("basis", part.basis.key), ("fallback", part.fallback)):
            if key_name is None or key_name not in keys:
                continue  # an invalid key is reported under keys.<name>
            shares = keys[key_name].shares
            missing = [c for c in communes if c not in shares]
            if missing:
                errors.append(f"{at}.{label}: key {key_name!r} has no share for {', '.join(missing)}")
            elif not any(shares[c] for c in communes):
                errors.append(f"{at}.{label}: key {key_name!r} gives these communes a total share of 0")
    if len(errors) > n_before:
        return None
    return Project(
        name=p.name,
        budget_cents=budget_cents,
        basis=first,
        communes=communes,
        fallback=parts[0].fallback,
        min_coverage=parts[0].min_coverage,
        description=p.description,
        parts=tuple(parts) if len(parts) > 1 else (),
        annual_budget_cents=annual_cents,
    )


def validate_allocation(
    data: Any,
    communes: Sequence[Commune],
    source: str = "allocation",
    *,
    indicators: IndicatorRegistry = INDICATORS,
) -> AllocationConfig:
    """Validate parsed YAML against the known communes; raise AllocationConfigError listing every problem.

    `indicators`: the usage indicators a basis may name (the built-in registry unless told)."""
    try:
        raw = _AllocationModel.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise AllocationConfigError(source, [f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
    known = {c.id: c for c in communes}
    errors: list[str] = []
    if not (0 <= raw.coverage_threshold <= 1):
        errors.append(f"coverage_threshold: must be between 0 and 1, got {raw.coverage_threshold}")
    keys = _check_keys(raw, known, errors)
    projects: list[Project] = []
    names: dict[str, int] = {}
    for i, p in enumerate(raw.projects):
        if p.name in names:
            errors.append(f"projects[{i}].name: {p.name!r} is already projects[{names[p.name]}]")
        names.setdefault(p.name, i)
        project = _check_project(i, p, raw, keys, known, errors, indicators)
        if project is not None:
            projects.append(project)
    if errors:
        raise AllocationConfigError(source, errors)
    return AllocationConfig(keys=keys, projects=tuple(projects), coverage_threshold=raw.coverage_threshold)


def parse_allocation(
    content: bytes | str,
    communes: Sequence[Commune],
    source: str = "allocation",
    *,
    indicators: IndicatorRegistry = INDICATORS,
) -> AllocationConfig:
    """Validate the content of an allocation file (callers hash the very bytes they parse)."""
    try:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        data, _ = read_yaml(text, _DecimalLoader)  # bounded: aliases, size, duplicate keys
    except UnicodeDecodeError as exc:
        raise AllocationConfigError(source, [f"(file): not UTF-8 text: {exc.reason}"]) from None
    except DocumentRefused as exc:
        raise AllocationConfigError(source, [str(issue) for issue in exc.issues]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else "(file)"
        problem = getattr(exc, "problem", None) or exc
        raise AllocationConfigError(source, [f"{at}: invalid YAML: {problem}"]) from None
    return validate_allocation(data, communes, source=source, indicators=indicators)


def read_allocation_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AllocationConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None


def load_allocation(path: Path, communes: Sequence[Commune]) -> AllocationConfig:
    """Read and validate an allocation file; errors are prefixed with the file name."""
    return parse_allocation(read_allocation_file(path), communes, source=str(path))


def check_allocation(path: Path, communes: Sequence[Commune]) -> list[str]:
    """The located errors of an allocation file, for `sitivmon check` (empty when it is valid)."""
    try:
        load_allocation(path, communes)
    except AllocationConfigError as exc:
        return [f"{exc.source}: {e}" for e in exc.errors]
    return []


# ---------------------------------------------------------------- reports API section

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ApiToken(BaseModel):
    """A bearer token of the reports API: give its SHA-256 (`token_sha256`, preferred) or the token itself.

    Only the digest is kept after start-up; a commune scope limits what the token sees to that commune.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    scope: str = Field(min_length=1, description="'syndicate' or a commune id")
    # The portal's role; by default a syndicate token is finance's and a commune token its commune's.
    # `operations` sees link status only (in the portal; the reports API refuses it).
    role: Literal["finance", "commune", "operations"] | None = None
    token: Secret | None = None
    token_sha256: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> ApiToken:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token or token_sha256")
        if self.token_sha256 is not None and not _HEX64.match(self.token_sha256.lower()):
            raise ValueError("token_sha256 must be 64 hexadecimal characters")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters")
        if self.role == "finance" and self.scope != "syndicate":
            raise ValueError("role finance needs scope 'syndicate'")
        if self.role == "commune" and self.scope == "syndicate":
            raise ValueError("role commune needs a commune scope")
        return self

    def digest(self) -> bytes:
        if self.token_sha256 is not None:
            return bytes.fromhex(self.token_sha256)
        assert self.token is not None
        return hashlib.sha256(self.token.get_secret_value().encode()).digest()


class ApiConfig(BaseModel):
    """The `api` section of the root config: who may read usage and reports over HTTP."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[ApiToken] = Field(default_factory=list)
    # The web portal under /ui/ (sign-in with these tokens); `secure_cookies` when served behind TLS.
    portal: bool = True
    secure_cookies: bool = False


def check_api(api: ApiConfig, communes: Sequence[Commune]) -> list[str]:
    """Located errors of the API section against the communes (for `sitivmon check`)."""
    known = {c.id for c in communes}
    errors = []
    names: set[str] = set()
    for i, t in enumerate(api.tokens):
        if t.scope != "syndicate" and t.scope not in known:
            errors.append(f"api.tokens[{i}].scope: unknown commune {t.scope!r} (or 'syndicate')")
        if t.name in names:
            errors.append(f"api.tokens[{i}].name: {t.name!r} is used twice")
        names.add(t.name)
    digests = [t.digest() for t in api.tokens]
    if len(set(digests)) != len(digests):
        errors.append("api.tokens: two entries have the same token")
    return errors
