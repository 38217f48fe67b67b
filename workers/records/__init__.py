"""The recorder: call and agent-state records (docs/records.md) from Kafka into PostgreSQL.

``parse`` reads the records off their envelopes, ``store`` writes a batch in one
transaction, ``recorder`` is the `acd record` process, ``migrate`` is `acd db` (Alembic, with
the schema's migrations in ``migrations/versions``).
"""
