"""A real PostgreSQL server for tests: initdb + pg_ctl in a temporary directory, on a free loopback port.

Debian's `postgresql` package (`.ci/apt-packages.txt`) ships the server binaries under
`/usr/lib/postgresql/<major>/bin`, outside PATH. PostgreSQL refuses to run as root, so when the tests
run as root the cluster is owned and run by the `postgres` system user that the package creates
(`nobody` when it is absent): the data directory is a fresh `mkdtemp` under /tmp chowned to it
(pytest's own tmp dirs sit under a root-only directory that user cannot enter).

The cluster listens on 127.0.0.1 only (no Unix socket), and its superuser has a random password
with SCRAM authentication, so that every DSN the tests hand to sitivmon carries a real secret that
must never show in a log or an error message. `durable=False` (the tests' default) turns off fsync:
the tests check what the store writes and reads, not power-loss durability; the benchmark keeps it on.

Usage::

    from tests.support import postgres
    with postgres.serve() as pg:
        dsn = pg.create_database("usage_a")   # postgresql://sitivmon:<password>@127.0.0.1:<port>/usage_a
        pg.stop(); pg.start()                 # an outage, same port and data

Outside CI a missing server skips the test with the reason; under CI (CI=true) it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.procs import free_port

SUPERUSER = "sitivmon"


def bindir() -> Path:
    """The newest installed server's bin directory (skip/fail when PostgreSQL is not installed)."""
    override = os.environ.get("SITIVMON_PG_BINDIR")
    found = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    for d in found:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    reason = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/apt-packages.txt must list postgresql")
    pytest.skip(f"{reason} (apt-get install postgresql, or run scripts/dev test)")


def _major(path: str) -> int:
    with contextlib.suppress(ValueError):
        return int(Path(path).parent.name)
    return 0


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists")


@dataclass(slots=True)
class PostgresServer:
    """One running cluster. `dsn()` gives a libpq URI with the superuser's password in it."""

    bin: Path
    workdir: Path
    host: str
    port: int
    password: str
    account: pwd.struct_passwd | None
    user: str = SUPERUSER
    _databases: int = field(default=0)

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def logfile(self) -> Path:
        return self.workdir / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def _run(self, argv: list[str], *, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PGPASSWORD": self.password}
        r = subprocess.run(
            argv, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if check and r.returncode != 0:
            what = " ".join(argv[:2])
            raise RuntimeError(f"{what} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{self.log()[-3000:]}")
        return r

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser with the real `psql` client; returns its unaligned output."""
        r = self._run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", dbname, "-c", sql],
        )
        return r.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database (each test gets its own); returns its DSN."""
        if name is None:
            self._databases += 1
            name = f"t{os.getpid()}_{self._databases}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @property
    def running(self) -> bool:
        return self._run([str(self.bin / "pg_ctl"), "status", "-D", str(self.datadir)], check=False).returncode == 0

    def start(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.datadir),
                   "-l", str(self.logfile)])

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects clients and stops cleanly; `immediate` is a crash (recovery at next start)."""
        self._run([str(self.bin / "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir)],
                  check=False)


def _configure(pg: PostgresServer, *, durable: bool) -> None:
    lines = [
        f"listen_addresses = '{pg.host}'",
        f"port = {pg.port}",
        "unix_socket_directories = ''",
        "max_connections = 200",
        "shared_buffers = 128MB",
        "log_min_messages = warning",
        "log_connections = off",
    ]
    if not durable:
        lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    with open(pg.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
        f.write("\n# sitivmon tests\n" + "\n".join(lines) + "\n")


@contextlib.contextmanager
def serve(*, durable: bool = False, host: str = "127.0.0.1") -> Iterator[PostgresServer]:
    """A fresh cluster running until the block exits, then stopped and removed."""
    bin_ = bindir()
    account = _run_as()
    workdir = Path(tempfile.mkdtemp(prefix="sitivmon-pg-"))
    try:
        password = secrets.token_urlsafe(18)
        pg = PostgresServer(bin_, workdir, host, 0, password, account)
        pwfile = workdir / "pw"
        pwfile.write_text(password + "\n", encoding="utf-8")
        if account is not None:
            for p in (workdir, pwfile):
                os.chown(p, account.pw_uid, account.pw_gid)
        pg._run([str(bin_ / "initdb"), "-D", str(pg.datadir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                 "--no-sync"])
        pwfile.unlink()
        conf = pg.datadir / "postgresql.conf"
        original = conf.read_text(encoding="utf-8")
        last: Exception | None = None
        for _ in range(5):  # a free port can be taken between the probe and the bind: try another
            pg.port = free_port(host=host)
            conf.write_text(original, encoding="utf-8")
            _configure(pg, durable=durable)
            try:
                pg.start()
                break
            except RuntimeError as exc:
                last = exc
                pg.stop("immediate")
        else:
            raise RuntimeError(f"PostgreSQL did not start: {last}")
        try:
            yield pg
        finally:
            pg.stop("immediate" if not durable else "fast")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the session (import this fixture into a conftest to use it there)."""
    with serve() as pg:
        yield pg


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database per test, dropped afterwards; its DSN carries the superuser's password."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn.rsplit("/", 1)[1])
