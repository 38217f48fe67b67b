"""Alembic's entry point: run the migrations on the connection `acd db` hands over.

`acd db upgrade` (workers/records/migrate.py) opens the connection from the ``postgres``
settings, takes the migration lock and passes the connection in ``config.attributes``;
there is no alembic.ini and no URL here.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the recorder's migrations with `acd db upgrade --config FILE`, not alembic")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
