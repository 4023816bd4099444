"""every layer's telemetry in its epoch row (epoch_metrics.layers) instead of layer_metrics

An epoch of an L-layer network was 1 + L rows to insert; it is now one, its layers one
float64 table in the bytea/BLOB column `layers` (jobs/layer_values.py). For XOR's 2000
epochs PostgreSQL's CPU to insert them fell from about 51 to 12 ms
(docs/service-performance.md, target 1). The stored values move across both ways,
NULL as NaN and back; a layer that had no row reads as NaN, as its missing row did.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

# The trigger's DDL and the value format are the schema's own (create_all runs the same).
from jobs.layer_values import WIDTH, pack, unpack
from jobs.models import METRIC_CLEANUP

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

FIELDS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "weight_norm", "update_ratio",
          "dead_fraction", "saturated_fraction")
# The trigger as migration 0002 made it, for the two tables again.
TWO_TABLE_CLEANUP = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION gradtrace_delete_job_metrics() RETURNS trigger AS $$ BEGIN "
        "DELETE FROM layer_metrics WHERE job_id = OLD.id; "
        "DELETE FROM epoch_metrics WHERE job_id = OLD.id; RETURN OLD; END $$ LANGUAGE plpgsql",),
    "sqlite": (
        "CREATE TRIGGER jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW BEGIN "
        "DELETE FROM layer_metrics WHERE job_id = OLD.id; "
        "DELETE FROM epoch_metrics WHERE job_id = OLD.id; END",),
}


def _job_ids(bind, table: str) -> list[str]:
    return list(bind.execute(sa.text(f"SELECT DISTINCT job_id FROM {table}")).scalars())


def _set_layers(bind, job_id: str, epochs: list[int], blobs: list[bytes]) -> None:
    if bind.dialect.name == "postgresql":  # one statement: an UPDATE per row took minutes
        bind.execute(sa.text(
            "UPDATE epoch_metrics SET layers = v.layers FROM unnest(CAST(:epochs AS int[]), "
            "CAST(:blobs AS bytea[])) AS v(epoch, layers) "
            "WHERE epoch_metrics.job_id = :job_id AND epoch_metrics.epoch = v.epoch"),
            {"job_id": job_id, "epochs": epochs, "blobs": blobs})
    else:
        bind.execute(sa.text("UPDATE epoch_metrics SET layers = :layers "
                             "WHERE job_id = :job_id AND epoch = :epoch"),
                     [{"job_id": job_id, "epoch": e, "layers": b} for e, b in zip(epochs, blobs)])


def _insert_layer_rows(bind, job_id: str, epochs: list[int], values: np.ndarray) -> None:
    """The rows of (E, L, WIDTH) `values` for `epochs`; NaN becomes NULL."""
    n, depth = values.shape[:2]
    columns = [np.repeat(epochs, depth).tolist(), np.tile(np.arange(1, depth + 1), n).tolist(),
               *(np.where(np.isnan(v), None, v).tolist()
                 for v in values.reshape(n * depth, WIDTH).T)]
    names = ", ".join(("epoch", "layer") + FIELDS)
    if bind.dialect.name == "postgresql":  # one statement, the columns as arrays
        types = ["int[]"] * 2 + ["float8[]"] * WIDTH
        bind.execute(sa.text(
            f"INSERT INTO layer_metrics (job_id, {names}) SELECT :job_id, * FROM unnest("
            + ", ".join(f"CAST(:c{i} AS {t})" for i, t in enumerate(types)) + ")"),
            {"job_id": job_id, **{f"c{i}": c for i, c in enumerate(columns)}})
    else:
        bind.exec_driver_sql(f"INSERT INTO layer_metrics (job_id, {names}) VALUES "
                             f"({', '.join('?' * (len(columns) + 1))})",
                             [(job_id, *row) for row in zip(*columns)])


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.add_column(sa.Column("layers", sa.LargeBinary(), nullable=True))
    # One job at a time: a job's layer rows become its epoch rows' `layers` values.
    select = sa.text(f"SELECT epoch, layer, {', '.join(FIELDS)} FROM layer_metrics "
                     "WHERE job_id = :job_id ORDER BY epoch, layer")
    for job_id in _job_ids(bind, "layer_metrics"):
        # Plain tuples: numpy reads a Row object field by field, through exceptions.
        rows = np.array(list(map(tuple, bind.execute(select, {"job_id": job_id}))),
                        dtype=np.float64)
        epochs, at = np.unique(rows[:, 0].astype(np.int64), return_inverse=True)
        layer = rows[:, 1].astype(np.int64) - 1
        keep = layer >= 0
        values = np.full((len(epochs), int(layer.max()) + 1 if keep.any() else 0, WIDTH), np.nan)
        values[at[keep], layer[keep]] = rows[keep, 2:]
        _set_layers(bind, job_id, epochs.tolist(), pack(values))
    if bind.dialect.name == "sqlite":  # CREATE TRIGGER IF NOT EXISTS would keep the old one
        op.execute("DROP TRIGGER IF EXISTS jobs_delete_metrics")
    for statement in METRIC_CLEANUP[bind.dialect.name]:
        op.execute(statement)
    op.drop_table("layer_metrics")


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "layer_metrics",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        *[sa.Column(f, sa.Float(), nullable=True) for f in FIELDS],
        sa.PrimaryKeyConstraint("job_id", "epoch", "layer"))
    select = sa.text("SELECT epoch, layers FROM epoch_metrics "
                     "WHERE job_id = :job_id AND layers IS NOT NULL ORDER BY epoch")
    for job_id in _job_ids(bind, "epoch_metrics"):
        rows = bind.execute(select, {"job_id": job_id}).all()
        if rows:
            n_layers = len(rows[0][1]) // (8 * WIDTH)
            _insert_layer_rows(bind, job_id, [epoch for epoch, _ in rows],
                               unpack([blob for _, blob in rows], n_layers))
    if bind.dialect.name == "sqlite":  # the trigger names epoch_metrics, which batch
        op.execute("DROP TRIGGER IF EXISTS jobs_delete_metrics")  # mode copies and renames
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("layers")
    for statement in TWO_TABLE_CLEANUP[bind.dialect.name]:
        op.execute(statement)
