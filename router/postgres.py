"""PostgreSQL: opening a connection pool with an error that says what to fix, PostgreSQL's
failures as the project's errors, and watching that the server answers.

Callers decide on ``retriable``, not on asyncpg's types (as router/store/errors.py does for
Redis):

- the link or the server's state (connection refused or lost, a server starting up or
  shutting down, too many connections, a deadlock or serialization failure, a timeout):
  ``DatabaseUnavailableError``, retriable: the same statement can succeed later;
- what only a change of configuration cures (credentials, a database that does not exist,
  tables not created yet, missing grants, a malformed DSN): ``DatabaseRefusedError``, a
  ``ConfigError``;
- PostgreSQL rejecting a value (classes 22 and 23: data and constraint errors):
  ``RecordRejectedError``: that record, not the link;
- anything else is a bug and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import asyncpg

from router.errors import AcdError, DatabaseRefusedError, DatabaseUnavailableError, RecordRejectedError
from router.link import PeriodicProbe
from router.settings import PostgresSettings

logger = logging.getLogger(__name__)

PING_EVERY_S = 1.0
# SQLSTATE classes (the first two characters): https://www.postgresql.org/docs/current/errcodes-appendix.html
UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
REFUSED_CLASSES = frozenset({"28", "3D", "3F", "42"})
REJECTED_CLASSES = frozenset({"22", "23"})
HOW_TO_SET = "ACD_POSTGRES__DSN (or ACD_POSTGRES__DSN_FILE, postgres.dsn_file)"

Pool = asyncpg.Pool


def dsn_target(dsn: str) -> str:
    """``user@host:port/dbname`` of a DSN, for messages: never its password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ",".join(parse_qs(parts.query).get("host", [])) or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "(the DSN given)"
    user = f"{parts.username}@" if parts.username else ""
    return f"{user}{host}:{port}{parts.path or '/'}"


def postgres_error(exc: BaseException, where: str) -> AcdError | None:
    """The project's error for ``exc`` (the caller raises it ``from exc``), None for a bug.

    ``exc`` may be wrapped (SQLAlchemy wraps asyncpg's errors): the chain is searched."""
    for cause in _chain(exc):
        if isinstance(cause, AcdError):
            return cause
        if isinstance(cause, asyncpg.PostgresError):
            return _server_error(cause, where)
        if isinstance(cause, asyncpg.exceptions.ClientConfigurationError):
            return DatabaseRefusedError(f"the PostgreSQL DSN is not usable ({cause}): fix {HOW_TO_SET}")
        if isinstance(cause, asyncpg.InterfaceError) and "closed" in str(cause):
            return DatabaseUnavailableError(f"PostgreSQL at {where}: {cause}")
        if isinstance(cause, OSError | TimeoutError):
            return DatabaseUnavailableError(f"PostgreSQL at {where} unavailable: {_text(cause)}")
    return None


def _server_error(exc: asyncpg.PostgresError, where: str) -> AcdError | None:
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    kind = sqlstate[:2]
    if kind in UNAVAILABLE_CLASSES:
        return DatabaseUnavailableError(f"PostgreSQL at {where} unavailable: {_text(exc)}")
    if kind == "28":
        return DatabaseRefusedError(
            f"PostgreSQL at {where} refused the login ({_text(exc)}): fix the user or password in "
            f"{HOW_TO_SET}, or the server's pg_hba.conf"
        )
    if sqlstate == "3D000":
        return DatabaseRefusedError(
            f"PostgreSQL at {where}: {_text(exc)}: create it (createdb) or fix the database name in {HOW_TO_SET}"
        )
    if sqlstate == "42P01":
        return DatabaseRefusedError(
            f"PostgreSQL at {where}: {_text(exc)}: the tables are not there yet; run "
            "`acd db upgrade --config FILE` first"
        )
    if sqlstate == "42501":
        return DatabaseRefusedError(
            f"PostgreSQL at {where}: {_text(exc)}: GRANT the DSN's user what it needs on the recorder's tables"
        )
    if kind in REFUSED_CLASSES:
        return DatabaseRefusedError(f"PostgreSQL at {where} refused a statement: {_text(exc)}")
    if kind in REJECTED_CLASSES:
        return RecordRejectedError(f"PostgreSQL rejected a value: {_text(exc)}")
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def unreachable(where: str, exc: BaseException) -> DatabaseUnavailableError:
    """The start-up error once PostgreSQL stayed unreachable: what to check, and where."""
    return DatabaseUnavailableError(
        f"cannot reach PostgreSQL at {where} ({_text(exc.__cause__ or exc)}): check that PostgreSQL "
        f"is running and that {HOW_TO_SET} names it"
    )


@contextmanager
def postgres_errors(where: str) -> Iterator[None]:
    """Raise the project's error for a PostgreSQL failure inside the block (see the module docstring)."""
    try:
        yield
    except Exception as exc:
        mapped = postgres_error(exc, where)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc


async def open_postgres(settings: PostgresSettings, application: str) -> Pool:
    """A connection pool that has made its first connection; retries for ``startup_timeout_s``
    while PostgreSQL starts. No DSN, or one PostgreSQL refuses, is a ``ConfigError``."""
    dsn = settings.require_dsn()
    where = dsn_target(dsn)
    deadline = time.monotonic() + settings.startup_timeout_s
    delay = 0.1
    while True:
        try:
            with postgres_errors(where):
                return await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=settings.pool_size,
                    timeout=settings.connect_timeout_s,
                    command_timeout=settings.command_timeout_s,
                    server_settings={"application_name": application},
                )
        except DatabaseUnavailableError as exc:
            if time.monotonic() + delay > deadline:
                raise unreachable(where, exc) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def open_postgres_on_demand(settings: PostgresSettings, application: str) -> Pool:
    """A pool that connects on first use (``min_size=0``), for a process whose main work does
    not need PostgreSQL (the API, for its reports): it starts and stays ready without it, and
    each use fails with the project's errors (``postgres_errors``) while PostgreSQL is away."""
    dsn = settings.require_dsn()
    with postgres_errors(dsn_target(dsn)):
        return await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=settings.pool_size,
            timeout=settings.connect_timeout_s,
            command_timeout=settings.command_timeout_s,
            server_settings={"application_name": application},
        )


async def close_pool(pool: Pool, timeout_s: float = 5.0) -> None:
    """Close gracefully; terminate what is still busy after ``timeout_s`` (a server gone away)."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pool.terminate()


class PostgresLink(PeriodicProbe):
    """Whether PostgreSQL answers now (``SELECT 1`` every ``every_s``): a readiness probe."""

    errors = (DatabaseUnavailableError,)

    def __init__(self, pool: Pool, where: str, every_s: float = PING_EVERY_S, timeout_s: float = 2.0) -> None:
        super().__init__("PostgreSQL", where, every_s)
        self.pool = pool
        self.timeout_s = timeout_s

    async def ask(self) -> None:
        with postgres_errors(self.where):
            async with asyncio.timeout(self.timeout_s):
                await self.pool.execute("SELECT 1")
