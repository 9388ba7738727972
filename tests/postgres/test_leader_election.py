"""Leader election on a real PostgreSQL (sitivmon.leader.postgres): session advisory locks held by
electors as two daemons would hold them, visible in pg_locks; a session the server ends, a server
stopped and started again; the session settings that bound a cut-off leader; no password in any message."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sitivmon.leader.election import Elector, Role
from sitivmon.leader.postgres import LOCK_SPACE, PostgresElection, _Session, role_locks
from tests.support.postgres import PostgresServer


def elector(dsn: str, shard: int = 1, **kw: float) -> Elector:
    store = PostgresElection(SecretStr(dsn), timeout_s=kw.get("timeout_s", 2.0), server_timeout_s=10)
    return Elector(store, role_locks(shard), interval_s=0.2, timeout_s=kw.get("timeout_s", 2.0),
                   registry=CollectorRegistry())  # fmt: skip


def advisory_locks(pg: PostgresServer, dbname: str) -> list[tuple[int, int, str]]:
    out = pg.psql(
        "SELECT l.classid, l.objid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted "
        f"AND l.database = (SELECT oid FROM pg_database WHERE datname = '{dbname}') "
        "ORDER BY 2",
    )
    return [(int(c), int(o), app) for c, o, app in (line.split("|") for line in out.splitlines() if line)]


def test_one_leader_per_role_and_the_locks_are_in_pg_locks(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    dbname = postgres_dsn.rsplit("/", 1)[1]

    async def main() -> None:
        a, b, other_shard = elector(postgres_dsn), elector(postgres_dsn), elector(postgres_dsn, shard=2)
        try:
            assert await a.step() == {Role.SHARD, Role.GLOBAL}
            assert await b.step() == frozenset()
            assert await other_shard.step() == {Role.SHARD}  # its own shard; the global role is taken
            for _ in range(3):  # checks neither lose nor stack the locks
                assert await a.step() == {Role.SHARD, Role.GLOBAL}
                assert await b.step() == frozenset()
            locks = advisory_locks(postgres_server, dbname)
            assert locks == [(LOCK_SPACE, 0, "sitivmon-leader"), (LOCK_SPACE, 1, "sitivmon-leader"),
                             (LOCK_SPACE, 2, "sitivmon-leader")]  # fmt: skip
            await a.close()
            assert advisory_locks(postgres_server, dbname) == [(LOCK_SPACE, 2, "sitivmon-leader")]
            assert await b.step() == {Role.SHARD, Role.GLOBAL}
        finally:
            for e in (a, b, other_shard):
                await e.close()

    asyncio.run(main())


def test_a_session_ended_by_the_server_steps_the_leader_down_and_the_other_takes_over(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    async def main() -> None:
        a, b = elector(postgres_dsn), elector(postgres_dsn)
        try:
            await a.step()
            await b.step()
            postgres_server.psql(  # what the server does to a leader it no longer hears from
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            )
            assert await b.step() == {Role.SHARD, Role.GLOBAL}
            assert await a.step() == frozenset()  # its next check fails: it knows it lost the roles
            assert await a.step() == frozenset()  # and reconnects as the follower
            assert a.metrics.transitions.labels("shard")._value.get() == 2
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_the_lock_session_bounds_a_cut_off_leader_on_both_ends(postgres_dsn: str) -> None:
    store = PostgresElection(SecretStr(postgres_dsn), timeout_s=1.5, server_timeout_s=12)
    session = store.session()
    assert isinstance(session, _Session)
    try:
        session.hold(["1"])
        assert session._conn is not None
        shown = {name: session._conn.execute(f"SHOW {name}").fetchone() for name in store.server_settings()}
        assert {k: v[0] if v else None for k, v in shown.items()} == {
            "statement_timeout": "1500ms", "tcp_keepalives_idle": "9", "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": "3", "tcp_user_timeout": "12000",  # milliseconds
        }  # fmt: skip
        params = session._conn.info.get_parameters()
        assert params["keepalives"] == "1" and params["tcp_user_timeout"] == "12000"
    finally:
        session.close()


def test_a_stopped_server_leaves_no_leader_then_one_again(
    postgres_server: PostgresServer, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = postgres_server.password

    async def main() -> tuple[float, float]:
        a, b = elector(postgres_dsn), elector(postgres_dsn)
        try:
            await a.step()
            await b.step()
            postgres_server.stop()
            stopped = time.monotonic()
            try:
                assert await a.step() == frozenset() and await b.step() == frozenset()
                down = time.monotonic() - stopped
                for _ in range(3):
                    assert await a.step() == frozenset() and await b.step() == frozenset()
            finally:
                postgres_server.start()
            back = time.monotonic()
            held: list[frozenset[Role]] = []
            while not any(held):
                held = [await a.step(), await b.step()]
            assert sorted(len(h) for h in held) == [0, 2]
            return down, time.monotonic() - back
        finally:
            await a.close()
            await b.close()

    with caplog.at_level(logging.INFO):
        down, up = asyncio.run(main())
    assert down < 2.0 and up < 5.0, (down, up)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "leader election: postgresql://127.0.0.1:" in text and "holds no role until it answers" in text
    assert password not in text and "answers again" in text
