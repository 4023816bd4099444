"""a trigger on jobs announces every change of a job row (LISTEN/NOTIFY)

The API processes keep polled answers while the job is unchanged (service/poll_cache.py).
Each used to confirm that with a query per poll; with this trigger they listen for
changes instead (jobs/change_feed.py), and a poll of an unchanged job reads nothing from
the database. PostgreSQL only: SQLite deployments are one process, which keeps checking.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

from alembic import op

# The trigger's DDL is the schema module's, which create_all also runs (CREATE OR REPLACE).
from jobs.models import JOB_CHANGE_NOTIFY

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in JOB_CHANGE_NOTIFY.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS jobs_notify_changed ON jobs")
        op.execute("DROP FUNCTION IF EXISTS gradtrace_notify_job_changed()")
