"""Election through the usage store's PostgreSQL database: session-level advisory locks.

Why advisory locks rather than a lease row: the lock is the session's, so the database frees it
the moment the session ends. A leader that crashes or is killed (its host still up) closes its
socket, the server ends the session at once and the follower takes the role at its next attempt
(`interval_s`), where a lease would make it wait for the lease to expire; no clock is compared
with another, and nothing is written every few seconds. What a lease gives for free, a bound when the
leader is cut off from the database without its socket being closed (network partition, host
powered off), is given here by the TCP settings of the lock session, on both ends:

- on the server, `tcp_keepalives_idle/interval/count` and `tcp_user_timeout` (session settings any
  user may set) make the server close a session it has not heard from for `server_timeout_s`, and
  so free its locks;
- on the client, `statement_timeout`, libpq's keepalives and `tcp_user_timeout`, and the elector's
  own `timeout_s` (`election.Elector`): a leader whose check does not answer steps down at most
  `interval_s + 2 * timeout_s` after its last answer, before the server frees its role
  (`LeaderSettings` refuses timings where it would not).

One connection holds every role of the daemon (the shard's and maybe the global one); a check is one
statement that tells, for each lock, whether this session holds it, taking the free ones. The DSN is
a secret: messages name the database by `describe_dsn`'s location, driver texts go through the
store's `scrubber`, and the driver exception is not chained.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from pydantic import SecretStr

from sitivmon.usage.port import StoreUnavailable
from sitivmon.usage.postgres import describe_dsn, scrubber

from .election import ElectionSession, ElectionUnavailable, Role

LOCK_SPACE = 0x5174_77
"""High 32 bits of every leadership lock key (`pg_locks.classid`); the usage store's own advisory
locks (0x5174_7601, 0x5174_7602) have 0 there, so they never collide."""


def lock_key(role: Role, shard: int) -> int:
    """The advisory lock of a role: `pg_locks.objid` is 0 for the global role, the shard index (1 for
    a daemon that is not sharded) for a shard's. Readable in `pg_locks` by whoever investigates."""
    return (LOCK_SPACE << 32) | (0 if role is Role.GLOBAL else shard)


_HOLD = """
SELECT k, CASE WHEN EXISTS (
           SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted AND l.objsubid = 1
              AND ((l.classid::bigint << 32) | l.objid::bigint) = k)
       THEN true ELSE pg_try_advisory_lock(k) END
  FROM unnest(%s::bigint[]) AS k
"""
"""Whether this session holds each lock, taking the free ones (not re-taking held ones: session
advisory locks stack, and a check every two seconds would pile up counts)."""


class PostgresElection:
    """`ElectionStore` on the database of `dsn`. Lock names are `str(lock_key(...))`."""

    always = False

    def __init__(self, dsn: SecretStr, *, timeout_s: float, server_timeout_s: int) -> None:
        try:
            self.location, secrets = describe_dsn(dsn)
        except StoreUnavailable as exc:
            raise ElectionUnavailable(str(exc)) from None
        self._scrub = scrubber(secrets)
        self._dsn = dsn
        self.timeout_s = timeout_s
        self.server_timeout_s = server_timeout_s

    def session(self) -> ElectionSession:
        return _Session(self)

    def conninfo(self) -> str:
        """The DSN with the lock session's client settings (those the DSN does not set itself)."""
        raw = self._dsn.get_secret_value()
        given = conninfo_to_dict(raw)
        user_timeout_ms = self.server_timeout_s * 1000
        defaults: dict[str, str | int] = {
            "connect_timeout": max(2, math.ceil(self.timeout_s)),  # libpq reads less than 2 as 2
            "application_name": "sitivmon-leader",
            "keepalives": 1,
            "keepalives_idle": max(1, self.server_timeout_s // 2),
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": user_timeout_ms,
        }
        return make_conninfo(raw, **{k: v for k, v in defaults.items() if k not in given})

    def server_settings(self) -> dict[str, str]:
        """The session settings that make the server drop a silent leader within `server_timeout_s`:
        keepalive probes after `server_timeout_s - 3` idle seconds, one a second, three unanswered
        ones close the session; data unacknowledged for `server_timeout_s` closes it too."""
        return {
            "statement_timeout": f"{max(1, round(self.timeout_s * 1000))}ms",
            "tcp_keepalives_idle": str(max(1, self.server_timeout_s - 3)),
            "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": str(self.server_timeout_s * 1000),
        }

    def error(self, exc: psycopg.Error) -> ElectionUnavailable:
        detail = " ".join(self._scrub(str(exc)).split())
        state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        return ElectionUnavailable(f"{self.location}: {detail}{state}")


class _Session:
    def __init__(self, store: PostgresElection) -> None:
        self.store = store
        self._conn: psycopg.Connection[TupleRow] | None = None

    def hold(self, names: Sequence[str]) -> frozenset[str]:
        try:
            conn = self._conn
            if conn is None:
                conn = psycopg.connect(self.store.conninfo(), autocommit=True)
                self._conn = conn
                for name, value in self.store.server_settings().items():
                    conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            rows = conn.execute(_HOLD, ([int(n) for n in names],)).fetchall()
        except psycopg.Error as exc:
            self.close()
            raise self.store.error(exc) from None
        return frozenset(str(k) for k, held in rows if held)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def role_locks(shard: int) -> dict[Role, str]:
    """The lock names of a daemon's roles (its shard index, 1 when not sharded)."""
    return {role: str(lock_key(role, shard)) for role in Role}
