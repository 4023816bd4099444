"""every layer's telemetry in its epoch row (epoch_metrics.layers) instead of layer_metrics

An epoch of an L-layer network was 1 + L rows to insert; it is now one, its layers one
float64 table in the bytea/BLOB column `layers` (jobs/layer_values.py). For XOR's 2000
epochs PostgreSQL's CPU to insert them fell from about 51 to 12 ms
(docs/service-performance.md, target 1).

The stored values move across both ways, NULL as NaN and back. Each job's tables have
its spec's depth: a layer without a row reads as NaN, as its missing row did, and rows of
layers the spec does not have (which no reader showed) are left out, as are layer rows
without an epoch row (never written by the worker: its rows of an epoch commit together);
how many is logged. The value format and the trigger are written out here, not imported,
so that later changes to the schema module cannot change what this revision does.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from __future__ import annotations

import json
import logging

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

FIELDS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "weight_norm", "update_ratio",
          "dead_fraction", "saturated_fraction")
WIDTH = len(FIELDS)
VALUE = np.dtype("<f8")  # jobs/layer_values.py's format: (layers, WIDTH), row-major
CHUNK_EPOCHS = 10_000  # a job's epochs moved at a time (a bounded amount of memory)

CLEANUP = {  # the trigger that stands in for a foreign key (migration 0002), per revision
    "postgresql": {
        "two": ("CREATE OR REPLACE FUNCTION gradtrace_delete_job_metrics() RETURNS trigger AS $$ "
                "BEGIN DELETE FROM layer_metrics WHERE job_id = OLD.id; "
                "DELETE FROM epoch_metrics WHERE job_id = OLD.id; RETURN OLD; END $$ "
                "LANGUAGE plpgsql",),
        "one": ("CREATE OR REPLACE FUNCTION gradtrace_delete_job_metrics() RETURNS trigger AS $$ "
                "BEGIN DELETE FROM epoch_metrics WHERE job_id = OLD.id; RETURN OLD; END $$ "
                "LANGUAGE plpgsql",)},
    "sqlite": {
        "two": ("DROP TRIGGER IF EXISTS jobs_delete_metrics",
                "CREATE TRIGGER jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW BEGIN "
                "DELETE FROM layer_metrics WHERE job_id = OLD.id; "
                "DELETE FROM epoch_metrics WHERE job_id = OLD.id; END"),
        "one": ("DROP TRIGGER IF EXISTS jobs_delete_metrics",
                "CREATE TRIGGER jobs_delete_metrics AFTER DELETE ON jobs FOR EACH ROW BEGIN "
                "DELETE FROM epoch_metrics WHERE job_id = OLD.id; END")},
}


def _online():
    if op.get_context().as_sql:
        raise RuntimeError("revision 0005 moves stored rows: run it against the database, "
                           "not as --sql")
    return op.get_bind()


def _job_ids(bind, table: str) -> list[str]:
    return list(bind.execute(sa.text(f"SELECT DISTINCT job_id FROM {table}")).scalars())


def _epoch_ranges(bind, table: str, job_id: str):
    """(after, upto] ranges of CHUNK_EPOCHS epochs covering the job's rows in `table`."""
    low, high = bind.execute(sa.text(f"SELECT min(epoch), max(epoch) FROM {table} "
                                     "WHERE job_id = :j"), {"j": job_id}).one()
    for after in range(low - 1, high, CHUNK_EPOCHS):
        yield after, after + CHUNK_EPOCHS


def _depth(bind, job_id: str) -> int | None:
    spec = bind.execute(sa.text("SELECT spec FROM jobs WHERE id = :j"), {"j": job_id}).scalar()
    if isinstance(spec, str):
        spec = json.loads(spec)
    try:
        return len(spec["network"]["layers"])
    except (TypeError, KeyError):
        return None


def upgrade() -> None:
    bind = _online()
    # SQLite commits each DDL statement by itself: a run that failed later left the
    # column, and running again must go on from there.
    if "layers" not in {c["name"] for c in sa.inspect(bind).get_columns("epoch_metrics")}:
        with op.batch_alter_table("epoch_metrics") as batch:
            batch.add_column(sa.Column("layers", sa.LargeBinary(), nullable=True))
    select = sa.text(f"SELECT epoch, layer, {', '.join(FIELDS)} FROM layer_metrics WHERE "
                     "job_id = :j AND epoch > :after AND epoch <= :upto ORDER BY epoch, layer")
    left_out = 0
    for job_id in _job_ids(bind, "layer_metrics"):
        depth = _depth(bind, job_id)
        for after, upto in _epoch_ranges(bind, "layer_metrics", job_id):
            # Plain tuples: numpy reads a Row object field by field, through exceptions.
            rows = np.array(list(map(tuple, bind.execute(
                select, {"j": job_id, "after": after, "upto": upto}))), dtype=np.float64)
            if len(rows):
                left_out += _set_layers(bind, job_id, rows, depth)
    if left_out:
        log.warning("0005: %d layer rows had no epoch row or no layer in their job's spec; "
                    "left out", left_out)
    for statement in CLEANUP[bind.dialect.name]["one"]:
        op.execute(statement)
    op.drop_table("layer_metrics")


def _set_layers(bind, job_id: str, rows: np.ndarray, depth: int | None) -> int:
    """Store (epoch, layer, *FIELDS) `rows` as their epochs' `layers`, `depth` layers each
    (the highest layer stored if the spec says none); returns the rows left out."""
    epochs, at = np.unique(rows[:, 0].astype(np.int64), return_inverse=True)
    layer = rows[:, 1].astype(np.int64) - 1
    depth = depth if depth is not None else int(layer.max()) + 1
    keep = (layer >= 0) & (layer < depth)
    values = np.full((len(epochs), depth, WIDTH), np.nan)
    values[at[keep], layer[keep]] = rows[keep, 2:]
    blobs = [row.tobytes() for row in values.astype(VALUE).reshape(len(epochs), -1)]
    if bind.dialect.name == "postgresql":  # one statement: an UPDATE per row took minutes
        stored = bind.execute(sa.text(
            "UPDATE epoch_metrics SET layers = v.layers FROM unnest(CAST(:epochs AS int[]), "
            "CAST(:blobs AS bytea[])) AS v(epoch, layers) "
            "WHERE epoch_metrics.job_id = :j AND epoch_metrics.epoch = v.epoch "
            "RETURNING epoch_metrics.epoch"),
            {"j": job_id, "epochs": epochs.tolist(), "blobs": blobs}).scalars().all()
    else:
        bind.execute(sa.text("UPDATE epoch_metrics SET layers = :layers "
                             "WHERE job_id = :j AND epoch = :epoch"),
                     [{"j": job_id, "epoch": e, "layers": b}
                      for e, b in zip(epochs.tolist(), blobs)])
        stored = bind.execute(sa.text(
            "SELECT epoch FROM epoch_metrics WHERE job_id = :j AND epoch >= :low "
            "AND epoch <= :high"), {"j": job_id, "low": int(epochs[0]),
                                    "high": int(epochs[-1])}).scalars().all()
    return int((~keep).sum() + (keep & ~np.isin(epochs[at], stored)).sum())


def downgrade() -> None:
    bind = _online()
    op.create_table(
        "layer_metrics",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        *[sa.Column(f, sa.Float(), nullable=True) for f in FIELDS],
        sa.PrimaryKeyConstraint("job_id", "epoch", "layer"))
    select = sa.text("SELECT epoch, layers FROM epoch_metrics WHERE job_id = :j AND "
                     "epoch > :after AND epoch <= :upto AND layers IS NOT NULL ORDER BY epoch")
    for job_id in _job_ids(bind, "epoch_metrics"):
        for after, upto in _epoch_ranges(bind, "epoch_metrics", job_id):
            rows = bind.execute(select, {"j": job_id, "after": after, "upto": upto}).all()
            # Each value's own length gives its depth (one network's rows all share one).
            for size in {len(blob) for _, blob in rows} - {0}:
                if size % (WIDTH * VALUE.itemsize) == 0:
                    same = [(epoch, blob) for epoch, blob in rows if len(blob) == size]
                    values = np.frombuffer(b"".join(blob for _, blob in same), VALUE)
                    _insert_layer_rows(bind, job_id, [epoch for epoch, _ in same],
                                       values.reshape(len(same), -1, WIDTH).astype(np.float64))
    if bind.dialect.name == "sqlite":  # the trigger names epoch_metrics, which batch
        op.execute("DROP TRIGGER IF EXISTS jobs_delete_metrics")  # mode copies and renames
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("layers")
    for statement in CLEANUP[bind.dialect.name]["two"]:
        op.execute(statement)


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
            f"INSERT INTO layer_metrics (job_id, {names}) SELECT :j, * FROM unnest("
            + ", ".join(f"CAST(:c{i} AS {t})" for i, t in enumerate(types)) + ")"),
            {"j": job_id, **{f"c{i}": c for i, c in enumerate(columns)}})
    else:
        bind.exec_driver_sql(f"INSERT INTO layer_metrics (job_id, {names}) VALUES "
                             f"({', '.join('?' * (len(columns) + 1))})",
                             [(job_id, *row) for row in zip(*columns)])
