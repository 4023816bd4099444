"""artifacts compressed with lz4 instead of pglz (PostgreSQL 14+ with lz4)

Storing a finished XOR run's metric archive (1.5 MB of npz and JSON) cost the database
65-90 ms with pglz, PostgreSQL's default, and 12-17 ms with lz4, for 15 % more room; a
checkpoint pays the same per byte. Existing rows keep their compression until rewritten.
A server without lz4 keeps pglz. SQLite has no such setting.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

from alembic import op

# The DDL is the schema module's, which create_all also runs.
from jobs.models import ARTIFACT_COMPRESSION

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in ARTIFACT_COMPRESSION.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE artifacts ALTER COLUMN data SET COMPRESSION default")
