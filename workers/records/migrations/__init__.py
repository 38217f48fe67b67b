"""Alembic's script directory for the recorder's schema (run by `acd db upgrade`)."""
