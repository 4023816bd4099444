"""metric tables without foreign keys; a trigger on jobs deletes a job's metrics

Every inserted metric row paid a foreign-key check against `jobs` (an index probe and a
row lock per row): about 40 % of the database's time for XOR's 2000 epoch rows and 6000
layer rows (docs/service-performance.md, target 1). The only writer already proves the
job exists in the same transaction (the fenced `hold()` UPDATE locks its row), so the
check added nothing; the ON DELETE CASCADE it carried is kept as an AFTER DELETE trigger
on `jobs`, which costs nothing on insert.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

from alembic import op

# The trigger as it was for this revision's two tables (migration 0005 replaces it).
METRIC_CLEANUP = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION gradtrace_delete_job_metrics() RETURNS trigger AS $$ BEGIN "
        "DELETE FROM layer_metrics WHERE job_id = OLD.id; "
        "DELETE FROM epoch_metrics WHERE job_id = OLD.id; RETURN OLD; END $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE TRIGGER jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW "
        "EXECUTE FUNCTION gradtrace_delete_job_metrics()"),
    "sqlite": (
        "CREATE TRIGGER IF NOT EXISTS jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW BEGIN "
        "DELETE FROM layer_metrics WHERE job_id = OLD.id; "
        "DELETE FROM epoch_metrics WHERE job_id = OLD.id; END",),
}

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLES = ("epoch_metrics", "layer_metrics")
# SQLite's foreign keys are unnamed; batch mode reflects them under this convention.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
DROP = {
    "postgresql": ("DROP TRIGGER IF EXISTS jobs_delete_metrics ON jobs",
                   "DROP FUNCTION IF EXISTS gradtrace_delete_job_metrics()"),
    "sqlite": ("DROP TRIGGER IF EXISTS jobs_delete_metrics",),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        if dialect == "postgresql":
            op.drop_constraint(f"{table}_job_id_fkey", table, type_="foreignkey")
        else:
            with op.batch_alter_table(table, naming_convention=NAMING) as batch:
                batch.drop_constraint(f"fk_{table}_job_id_jobs", type_="foreignkey")
    for statement in METRIC_CLEANUP[dialect]:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in DROP[dialect]:
        op.execute(statement)
    for table in TABLES:
        # Orphaned rows (none are expected: the writer checks the job) would block the key.
        op.execute(f"DELETE FROM {table} WHERE job_id NOT IN (SELECT id FROM jobs)")
        if dialect == "postgresql":
            op.create_foreign_key(f"{table}_job_id_fkey", table, "jobs", ["job_id"], ["id"],
                                  ondelete="CASCADE")
        else:
            with op.batch_alter_table(table, naming_convention=NAMING) as batch:
                batch.create_foreign_key(f"fk_{table}_job_id_jobs", "jobs", ["job_id"], ["id"],
                                         ondelete="CASCADE")
