"""Usage tests: the PostgreSQL server and per-test databases, for the store contract's postgresql backend."""

from tests.support.postgres import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]
