"""PostgreSQL tests: a real server for the session (tests/support/postgres.py), a database per test."""

from tests.support.postgres import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]
