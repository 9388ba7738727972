"""Who is signed in to the portal: API tokens exchanged for short server-side sessions.

A token is typed once, hashed and compared like the API does; the browser then holds only a random
session id (HttpOnly, SameSite=Strict cookie), never the token. Sessions live in memory, bounded in
number and time; a reload that removes a token ends its sessions at their next request. Every POST
carries the session's CSRF token; sign-in attempts are throttled per source address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

SYNDICATE = "syndicate"


class Role(StrEnum):
    FINANCE = "finance"  # every commune, every page, closes months
    COMMUNE = "commune"  # its own commune only, everywhere
    OPERATIONS = "operations"  # link status, read-only


@dataclass(frozen=True, slots=True)
class Account:
    """What a token may do in the portal; `commune` is set for the commune role only."""

    name: str
    role: Role
    commune: str | None
    digest: bytes

    def may_see_commune(self, commune: str) -> bool:
        return self.role is Role.FINANCE or (self.role is Role.COMMUNE and self.commune == commune)

    @property
    def sees_money(self) -> bool:
        return self.role in (Role.FINANCE, Role.COMMUNE)


def account_for(name: str, scope: str, role: str | None, digest: bytes) -> Account:
    """The portal account of an API token: `role` when the token states one, else from its scope."""
    if role == Role.OPERATIONS:
        return Account(name, Role.OPERATIONS, None, digest)
    if scope == SYNDICATE:
        return Account(name, Role.FINANCE, None, digest)
    return Account(name, Role.COMMUNE, scope, digest)


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode()).digest()


def find_account(accounts: Sequence[Account], token: str) -> Account | None:
    """Constant-time over every account: the time does not tell which entry matched."""
    wanted = digest_of(token)
    found: Account | None = None
    for account in accounts:
        if hmac.compare_digest(account.digest, wanted):
            found = account
    return found


@dataclass(slots=True)
class Session:
    id: str
    account: Account
    csrf: str
    created: float
    expires: float


class Sessions:
    """Server-side sessions, bounded: the oldest go first when a flood of sign-ins fills the table."""

    def __init__(self, *, ttl_s: float = 8 * 3600, max_sessions: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def open(self, account: Account) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), account, secrets.token_urlsafe(32), now, now + self.ttl_s)
        self._by_id[session.id] = session
        while len(self._by_id) > self.max_sessions:
            self._by_id.popitem(last=False)
        return session

    def get(self, session_id: str | None, accounts: Sequence[Account]) -> Session | None:
        """The live session of that id whose token still exists in the current configuration."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires <= self.clock() or not any(
            hmac.compare_digest(a.digest, session.account.digest) and a.role == session.account.role
            and a.commune == session.account.commune for a in accounts
        ):
            self._by_id.pop(session_id, None)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass(slots=True)
class SignInThrottle:
    """At most `attempts` failed sign-ins per source per `window_s`; the table itself is bounded."""

    attempts: int = 5
    window_s: float = 60.0
    max_sources: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def retry_after(self, source: str) -> float:
        """Seconds until `source` may try again (0: now)."""
        seen = self._failures.get(source)
        if seen is None:
            return 0.0
        now = self.clock()
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if len(seen) < self.attempts:
            return 0.0
        return max(seen[0] + self.window_s - now, 0.0)

    def failed(self, source: str) -> None:
        seen = self._failures.setdefault(source, deque())
        self._failures.move_to_end(source)
        seen.append(self.clock())
        while len(seen) > self.attempts:
            seen.popleft()
        while len(self._failures) > self.max_sources:
            self._failures.popitem(last=False)

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)


def same_token(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())
