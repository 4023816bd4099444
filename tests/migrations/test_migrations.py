"""Alembic: upgrade from empty to head on SQLite and PostgreSQL; schema matches models."""
from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from jobs.change_feed import libpq_dsn
from jobs.db import make_engine, make_sessionmaker, session_scope
from jobs.layer_values import unpack
from jobs.models import JOB_CHANGED_CHANNEL, Base, EpochMetric, Job
from tests.jobs.training_fixtures import bare_job
from tests.integration.services import ROOT, fresh_postgres_database


def _config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def _assert_matches_models(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert set(Base.metadata.tables) <= tables


def _round_trip(url: str) -> None:
    config = _config(url)
    command.upgrade(config, "head")
    _assert_matches_models(url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    _assert_matches_models(url)


def test_single_head():
    heads = ScriptDirectory.from_config(_config("sqlite://")).get_heads()
    assert len(heads) == 1


def test_sqlite_upgrade_matches_models(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.integration
def test_postgres_upgrade_matches_models():
    with fresh_postgres_database() as url:
        _round_trip(url)


def _metric_rows(factory, job_id: str) -> int:
    with session_scope(factory) as session:
        return session.query(EpochMetric).filter_by(job_id=job_id).count()


def _assert_deleting_a_job_deletes_its_metrics(url: str) -> None:
    """The metric table has no foreign key (migration 0002); the trigger on jobs stands
    in for its ON DELETE CASCADE, and leaves other jobs' rows alone."""
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    doomed, kept = bare_job(factory, "doomed"), bare_job(factory, "kept")
    with session_scope(factory) as session:
        for job_id in (doomed, kept):
            session.add_all([EpochMetric(job_id=job_id, epoch=e) for e in (1, 2)])
    with session_scope(factory) as session:
        session.delete(session.get(Job, doomed))
    assert (_metric_rows(factory, doomed), _metric_rows(factory, kept)) == (0, 2)
    engine.dispose()


def test_sqlite_job_deletion_deletes_metrics(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(_config(url), "head")
    _assert_deleting_a_job_deletes_its_metrics(url)


def test_create_all_also_deletes_metrics_with_the_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    Base.metadata.create_all(engine)  # a second create_all must not fail on the trigger
    engine.dispose()
    _assert_deleting_a_job_deletes_its_metrics(url)


@pytest.mark.integration
def test_postgres_job_deletion_deletes_metrics():
    with fresh_postgres_database() as url:
        command.upgrade(_config(url), "head")
        _assert_deleting_a_job_deletes_its_metrics(url)


def _announced(url: str, change) -> tuple[str, list[str]]:
    """A new job's id, and the ids announced on the change channel while
    `change(session, job_id)` commits."""
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    job_id = bare_job(factory, f"announced-{uuid.uuid4().hex[:8]}")
    with psycopg.connect(libpq_dsn(url), autocommit=True) as listener:
        listener.execute(f"LISTEN {JOB_CHANGED_CHANNEL}")
        with session_scope(factory) as session:
            change(session, job_id)
        heard = [note.payload for note in listener.notifies(timeout=1.0)]
    engine.dispose()
    return job_id, heard


@pytest.mark.integration
def test_postgres_job_changes_are_announced_from_0003_on():
    """Migration 0003's trigger announces an update and a delete of a job row once each,
    after the commit; before 0003 (and after its downgrade) nothing is sent."""
    def update(session, job_id):
        session.get(Job, job_id).status = "running"
        session.flush()
        session.get(Job, job_id).epoch = 3  # two updates, one transaction: one notice

    def delete(session, job_id):
        session.delete(session.get(Job, job_id))
    with fresh_postgres_database() as url:
        command.upgrade(_config(url), "head")
        for change in (update, delete):
            job_id, heard = _announced(url, change)
            assert heard == [job_id]
        command.downgrade(_config(url), "0002")
        assert _announced(url, update)[1] == []


@pytest.mark.integration
def test_create_all_also_announces_job_changes_and_compresses_artifacts_with_lz4():
    with fresh_postgres_database() as url:
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        job_id, heard = _announced(url, lambda session, job_id: session.delete(
            session.get(Job, job_id)))
        assert heard == [job_id]
        assert _artifact_compression(url) == _lz4_if_the_server_has_it(url)


def _scalar(url: str, sql: str):
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.exec_driver_sql(sql).scalar_one()
    engine.dispose()
    return value


def _artifact_compression(url: str) -> str:
    """pg_attribute's compression of artifacts.data: 'l' lz4, '' the server default."""
    return _scalar(url, "SELECT attcompression FROM pg_attribute "
                        "WHERE attrelid = 'artifacts'::regclass AND attname = 'data'")


def _lz4_if_the_server_has_it(url: str) -> str:
    """What migration 0004 leaves: lz4 on a server built with it, else the default."""
    has_lz4 = _scalar(url, "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                           "WHERE name = 'default_toast_compression'")
    return "l" if has_lz4 else ""


@pytest.mark.integration
def test_postgres_artifacts_are_lz4_from_0004_on():
    with fresh_postgres_database() as url:
        command.upgrade(_config(url), "0003")
        assert _artifact_compression(url) == ""
        command.upgrade(_config(url), "head")
        assert _artifact_compression(url) == _lz4_if_the_server_has_it(url)
        command.downgrade(_config(url), "0003")
        assert _artifact_compression(url) == ""


FIELDS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "weight_norm", "update_ratio",
          "dead_fraction", "saturated_fraction")
# Layer rows before 0005: (epoch, layer, *FIELDS); NULL is a non-finite value. The job's
# spec has two layers: epoch 2 has no row for layer 2, epoch 3 no layer rows at all.
LAYER_ROWS = [(1, 1, 0.1, 5e-324, None, 1.7976931348623157e308, -0.0, 0.5, None),
              (1, 2, *[1 / 3] * 7), (2, 1, *range(7))]
# Rows no reader showed: a layer the spec does not have, and an epoch with no epoch row.
UNSHOWN = [(2, 3, *range(7)), (9, 1, *range(7))]


def _layer_rows(url: str, job_id: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT epoch, layer, {', '.join(FIELDS)} FROM layer_metrics "
                                 "WHERE job_id = :j ORDER BY epoch, layer"), {"j": job_id}).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def _assert_layer_rows_move_into_epoch_rows_and_back(url: str) -> None:
    """0005 packs each epoch's layer rows into its row's `layers`, as many layers as the
    job's spec has (NULL as NaN, a missing layer all NaN, an epoch without layer rows
    NULL); its downgrade gives the rows back, a missing layer as NULLs."""
    config = _config(url)
    command.upgrade(config, "0004")
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    job_id = bare_job(factory, "migrated")
    with session_scope(factory) as session:
        session.get(Job, job_id).spec = {"network": {"layers": [{"units": 3}, {"units": 1}]}}
    marks = ", ".join(f":{f}" for f in FIELDS)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO epoch_metrics (job_id, epoch) VALUES (:j, :e)"),
                     [{"j": job_id, "e": e} for e in (1, 2, 3)])
        conn.execute(text(f"INSERT INTO layer_metrics (job_id, epoch, layer, {', '.join(FIELDS)}) "
                          f"VALUES (:j, :e, :l, {marks})"),
                     [{"j": job_id, "e": r[0], "l": r[1], **dict(zip(FIELDS, r[2:]))}
                      for r in LAYER_ROWS + UNSHOWN])
    command.upgrade(config, "0005")
    with engine.connect() as conn:
        blobs = conn.execute(text("SELECT layers FROM epoch_metrics WHERE job_id = :j "
                                  "ORDER BY epoch"), {"j": job_id}).scalars().all()
    assert len(blobs) == 3 and blobs[2] is None
    got = unpack(blobs[:2], 2)
    want = np.full((2, 2, 7), np.nan)
    for epoch, layer, *values in LAYER_ROWS:
        want[epoch - 1, layer - 1] = np.array(values, dtype=np.float64)
    assert np.array_equal(got, want, equal_nan=True)
    assert got[0, 0, 1] == 5e-324  # a subnormal kept exactly
    command.downgrade(config, "0004")
    missing = (2, 2, *[None] * 7)  # the missing layer comes back as a row of NULLs
    assert _layer_rows(url, job_id) == sorted(LAYER_ROWS + [missing])
    engine.dispose()


def test_sqlite_0005_goes_on_after_a_failed_run(tmp_path, monkeypatch):
    """SQLite commits a migration's DDL as it goes: a 0005 that failed after adding its
    column must run again from there."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    config = _config(url)
    command.upgrade(config, "0004")
    engine = make_engine(url)
    job_id = bare_job(make_sessionmaker(engine), "interrupted")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO epoch_metrics (job_id, epoch) VALUES (:j, 1)"),
                     {"j": job_id})
        conn.execute(text("INSERT INTO layer_metrics (job_id, epoch, layer, delta_norm) "
                          "VALUES (:j, 1, 1, 0.5)"), {"j": job_id})
    real = np.unique

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(np, "unique", fail)
    with pytest.raises(RuntimeError):
        command.upgrade(config, "0005")
    monkeypatch.setattr(np, "unique", real)
    command.upgrade(config, "0005")
    with engine.connect() as conn:
        blob = conn.execute(text("SELECT layers FROM epoch_metrics")).scalar_one()
    assert unpack([blob], 1)[0, 0, 2] == 0.5
    engine.dispose()


def test_sqlite_0005_moves_layer_rows_both_ways(tmp_path):
    _assert_layer_rows_move_into_epoch_rows_and_back(f"sqlite:///{tmp_path / 'l.db'}")


@pytest.mark.integration
def test_postgres_0005_moves_layer_rows_both_ways():
    with fresh_postgres_database() as url:
        _assert_layer_rows_move_into_epoch_rows_and_back(url)
