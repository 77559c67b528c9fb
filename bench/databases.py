"""The database a benchmark target needs (``Target.database``): migrated before its servers
start; on PostgreSQL a database created for the run on 127.0.0.1:5432 (user ``postgres``,
trust auth) and dropped after it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import AsyncIterator

from bench.procs import ChildFailed, Children
from bench.targets import Target

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
MIGRATE_TIMEOUT = 120.0


def _admin(sql: str) -> None:
    import psycopg  # the PostgreSQL targets only

    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(sql)


@contextlib.asynccontextmanager
async def target_database(target: Target, children: Children) -> AsyncIterator[None]:
    """Make and migrate ``target``'s database, with the run's environment (``children``'
    ``base_env``, which gets ``BENCH_PG`` for PostgreSQL); drop it afterwards."""
    name = None
    if target.database == "postgresql":
        name = f"bench_{secrets.token_hex(5)}"
        await asyncio.to_thread(_admin, f'CREATE DATABASE "{name}"')
        children.base_env["BENCH_PG"] = name
    try:
        if target.database is not None:
            migrate = await children.start(
                "migrate", [sys.executable, "-m", "django", "migrate", "--verbosity", "0"]
            )
            if await asyncio.wait_for(migrate.proc.wait(), MIGRATE_TIMEOUT):
                raise ChildFailed(f"migrate failed:\n{migrate.log_tail()}")
        yield
    finally:
        if name is not None:
            await asyncio.to_thread(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
