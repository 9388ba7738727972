"""The test server itself: unprivileged, loopback only, password required, restartable."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from tests.support.postgres import PostgresServer


def test_runs_unprivileged_on_loopback_with_a_password(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT current_setting('listen_addresses'), current_setting('port')").fetchone()
    assert row == ("127.0.0.1", str(postgres_server.port))
    if os.geteuid() == 0:
        pid = int((postgres_server.datadir / "postmaster.pid").read_text().split()[0])
        assert os.stat(f"/proc/{pid}").st_uid != 0
    wrong = postgres_dsn.replace(postgres_server.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


def test_stop_and_start_keep_port_and_data(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    postgres_server.stop()
    try:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", postgres_server.port), timeout=1):
            pass
    finally:
        postgres_server.start()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
