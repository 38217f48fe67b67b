"""`acd db`: the recorder's schema, applied with Alembic from the migrations in this package.

    acd db upgrade --config FILE   apply every migration not applied yet (idempotent)
    acd db current --config FILE   the database's revision; exit 1 when it is behind

Alembic runs on a connection made from the ``postgres`` settings (the same DSN, from the
environment or a secret file, as `acd record`), inside one transaction that first takes an
advisory lock, so two upgrades started together apply each migration once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from functools import cache
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from router.errors import DatabaseRefusedError, DatabaseUnavailableError
from router.postgres import Pool, dsn_target, postgres_errors, unreachable
from router.settings import PostgresSettings, load_settings

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x61636472  # pg_advisory_xact_lock key: "acdr"
UPGRADE_HINT = "run `acd db upgrade --config FILE` first"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache
def head_revision() -> str:
    """The newest revision this installation ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _engine(settings: PostgresSettings) -> AsyncEngine:
    dsn = settings.require_dsn()

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            dsn,
            timeout=settings.connect_timeout_s,
            command_timeout=settings.command_timeout_s,
            server_settings={"application_name": "acd db"},
        )

    return create_async_engine("postgresql+asyncpg://", async_creator=connect, poolclass=NullPool)


def _upgrade(connection: Connection, target: str) -> str | None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, target)
    return _current(connection)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(settings: PostgresSettings, target: str = "head") -> str | None:
    """Apply the migrations up to ``target``; the revision the database is at afterwards.
    Retries for ``startup_timeout_s`` while PostgreSQL cannot be reached."""
    deadline = time.monotonic() + settings.startup_timeout_s
    while True:
        engine = _engine(settings)
        try:
            with postgres_errors(dsn_target(settings.require_dsn())):
                async with engine.begin() as connection:
                    return await connection.run_sync(_upgrade, target)
        except DatabaseUnavailableError as exc:
            if time.monotonic() > deadline:
                raise unreachable(dsn_target(settings.require_dsn()), exc) from None
            await asyncio.sleep(0.5)
        finally:
            await engine.dispose()


async def current(settings: PostgresSettings) -> str | None:
    """The revision the database is at (None: no schema yet)."""
    engine = _engine(settings)
    try:
        with postgres_errors(dsn_target(settings.require_dsn())):
            async with engine.connect() as connection:
                return await connection.run_sync(_current)
    except DatabaseUnavailableError as exc:
        raise unreachable(dsn_target(settings.require_dsn()), exc) from None
    finally:
        await engine.dispose()


async def check_schema(pool: Pool, where: str) -> str:
    """The database's revision, if it is this installation's head; else what to run."""
    head = head_revision()
    with postgres_errors(where):
        exists = await pool.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        revision = await pool.fetchval("SELECT version_num FROM alembic_version") if exists else None
    if revision == head:
        return head
    if revision is None:
        raise DatabaseRefusedError(f"PostgreSQL at {where} has no recorder tables: {UPGRADE_HINT}")
    if revision in known_revisions():
        raise DatabaseRefusedError(
            f"PostgreSQL at {where} has the recorder's schema at revision {revision}, this acd needs "
            f"{head}: {UPGRADE_HINT}"
        )
    logger.warning("schema revision %s at %s is newer than this acd's (%s): continuing", revision, where, head)
    return str(revision)


def run_db_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config).postgres
    where = dsn_target(settings.require_dsn())
    head = head_revision()
    if args.db_command == "upgrade":
        revision = asyncio.run(upgrade(settings))
        print(f"{where}: schema at revision {revision} (head)")
        return 0
    revision = asyncio.run(current(settings))
    if revision == head:
        print(f"{where}: schema at revision {revision} (head)")
        return 0
    print(f"{where}: schema at revision {revision or '(none)'}, head is {head}: run `acd db upgrade`")
    return 1
