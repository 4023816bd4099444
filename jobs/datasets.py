"""Datasets: a user's named rows over arrays stored once per content hash.

Parsing lives in `jobs.dataset_parsing` (re-exported here). The functions below take a
Session and never commit: the caller owns the transaction. Blob files are outside the
transaction, so they are written before the row is inserted (a committed row always has
its blob; a rolled-back insert at worst leaves an unreferenced blob) and deleted only
after the deleting transaction commits, once no row references the hash any more.
"""
from __future__ import annotations

import logging
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from jobs.dataset_parsing import (BUILTINS, TASKS, ParsedDataset, decode, encode, open_arrays,
                                  parse_builtin, parse_csv, parse_json, parse_npz,
                                  write_canonical)
from jobs.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from jobs.models import ACTIVE_STATUSES, Dataset, Job, User
from jobs.storage import BlobStore, CorruptBlob

__all__ = [
    "BUILTINS", "TASKS", "SOURCES", "ParsedDataset", "parse_json", "parse_builtin",
    "parse_csv", "parse_npz", "encode", "decode", "open_arrays", "create_dataset", "get_dataset",
    "list_datasets", "delete_dataset", "load_arrays", "dataset_to_dict",
]

log = logging.getLogger(__name__)

SOURCES = ("json", "builtin", "csv", "npz")
MAX_NAME_CHARS = 200
MAX_LIST_LIMIT = 1000
_PENDING_DELETES = "gradtrace.pending_blob_deletes"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise InvalidInput("invalid dataset name",
                           [("name", f"must be 1 to {MAX_NAME_CHARS} characters")])
    if not name.strip():
        raise InvalidInput("invalid dataset name", [("name", "must not be blank")])
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("invalid dataset name",
                           [("name", "must not contain control characters")])
    return name


def _storage_used(session: Session, owner_id: str) -> int:
    total = session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0))
                           .where(Dataset.owner_id == owner_id))
    return int(total or 0)


def _lock_owner(session: Session, owner_id: str) -> None:
    # Serialises one user's uploads on PostgreSQL so two cannot both pass the quota check.
    found = session.scalar(select(User.id).where(User.id == owner_id).with_for_update())
    if found is None:
        raise NotFound("user not found", [("owner_id", "no such user")])


def create_dataset(session: Session, store: BlobStore, *, owner_id: str, name: str,
                   parsed: ParsedDataset, source: str, max_storage_bytes: int,
                   scratch: Path | None = None) -> Dataset:
    """Store the arrays (once per content hash) and add the owner's row; flushed, not committed.

    Every row counts its full size against the owner's quota, duplicates included. The
    blob is written to a file in `scratch` (a `store.scratch()` folder; a fresh one if
    None) and hashed there, so it is never held in memory.
    """
    name = _check_name(name)
    if source not in SOURCES:
        raise InvalidInput("invalid dataset source",
                           [("source", f"must be one of: {', '.join(SOURCES)}")])
    if scratch is None:
        with store.scratch() as folder:
            return create_dataset(session, store, owner_id=owner_id, name=name, parsed=parsed,
                                  source=source, max_storage_bytes=max_storage_bytes,
                                  scratch=folder)
    staged = store.stage(lambda f: write_canonical(parsed, f), scratch)
    _lock_owner(session, owner_id)
    used = _storage_used(session, owner_id)
    if used + staged.size > max_storage_bytes:
        raise LimitExceeded("max_storage_bytes_per_user", max_storage_bytes,
                            f"storing {staged.size} more bytes would exceed the quota of "
                            f"{max_storage_bytes} bytes ({used} in use)", kind="quota",
                            field="dataset")
    store.put_staged(staged)
    dataset = Dataset(owner_id=owner_id, name=name, sha256=staged.sha256,
                      n_samples=parsed.n_samples, n_features=parsed.n_features,
                      n_outputs=parsed.n_outputs, task=parsed.task,
                      classes=list(parsed.classes) if parsed.classes else None,
                      size_bytes=staged.size, source=source)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, owner_id: str, dataset_id: str) -> Dataset:
    """The owner's dataset; NotFound alike for a missing id and for someone else's."""
    dataset = session.scalar(select(Dataset).where(Dataset.id == dataset_id,
                                                   Dataset.owner_id == owner_id))
    if dataset is None:
        raise NotFound("dataset not found", [("dataset_id", "no such dataset")])
    return dataset


def list_datasets(session: Session, owner_id: str, *, limit: int = 50,
                  offset: int = 0) -> list[Dataset]:
    """The owner's datasets, newest first."""
    if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput("invalid limit", [("limit", f"must be 1 to {MAX_LIST_LIMIT}")])
    if type(offset) is not int or offset < 0:
        raise InvalidInput("invalid offset", [("offset", "must be 0 or more")])
    query = (select(Dataset).where(Dataset.owner_id == owner_id)
             .order_by(Dataset.created_at.desc(), Dataset.id.desc())
             .limit(limit).offset(offset))
    return list(session.scalars(query))


def delete_dataset(session: Session, store: BlobStore, owner_id: str, dataset_id: str) -> None:
    """Delete the owner's dataset unless an active job uses it (Conflict).

    Finished jobs keep their rows (their `dataset_id` becomes NULL). The blob is removed
    after the caller commits, if no dataset row still has its hash.
    """
    dataset = get_dataset(session, owner_id, dataset_id)
    active = session.execute(select(Job.id, Job.status).where(
        Job.dataset_id == dataset.id, Job.status.in_(ACTIVE_STATUSES)).limit(1)).first()
    if active is not None:
        raise Conflict("the dataset is used by an active job",
                       [("dataset_id", f"job {active.id} is {active.status}")])
    sha = dataset.sha256
    session.delete(dataset)
    session.flush()
    if not _sha_in_use(session, sha):
        _delete_blob_after_commit(session, store, sha)


def _sha_in_use(session: Session, sha: str) -> bool:
    return session.scalar(select(Dataset.id).where(Dataset.sha256 == sha).limit(1)) is not None


def _delete_blob_after_commit(session: Session, store: BlobStore, sha: str) -> None:
    pending = session.info.get(_PENDING_DELETES)
    if pending is None:
        pending = session.info[_PENDING_DELETES] = []
        event.listen(session, "after_commit", _run_pending_deletes)
        event.listen(session, "after_rollback", _drop_pending_deletes)
    pending.append((store, sha))


def _drop_pending_deletes(session: Session) -> None:
    session.info[_PENDING_DELETES] = []


def _run_pending_deletes(session: Session) -> None:
    pending, session.info[_PENDING_DELETES] = session.info.get(_PENDING_DELETES, []), []
    if not pending:
        return
    # The session cannot emit SQL inside after_commit; re-check on a fresh connection, since
    # another transaction may have added a row with the same hash meanwhile.
    bind = session.get_bind(mapper=Dataset)
    try:
        with bind.engine.connect() as conn:
            for store, sha in pending:
                still_used = conn.scalar(
                    select(Dataset.id).where(Dataset.sha256 == sha).limit(1)) is not None
                if not still_used:
                    store.delete(sha)
    except (OSError, SQLAlchemyError):
        # The commit already happened; an unreferenced blob is harmless garbage.
        log.warning("could not remove unreferenced dataset blobs", exc_info=True)


def load_arrays(store: BlobStore, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's (X, y), checked against its hash and its row's shape.

    X is a read-only memory map of the blob (shared by every process that trains on it,
    and paged in as rows are used); y is read into memory.
    """
    X, y = open_arrays(store.verify(dataset.sha256))
    if X.shape != (dataset.n_samples, dataset.n_features) or len(y) != dataset.n_samples:
        raise CorruptBlob(f"blob {dataset.sha256} does not match dataset {dataset.id}")
    return X, y


def _iso_utc(moment: datetime) -> str:
    # SQLite hands back naive datetimes; every timestamp in the schema is written in UTC.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def dataset_to_dict(ds: Dataset) -> dict:
    """The dataset as a JSON-ready dict (no owner id, no storage path)."""
    return {
        "id": ds.id, "name": ds.name, "n_samples": ds.n_samples,
        "n_features": ds.n_features, "n_outputs": ds.n_outputs, "task": ds.task,
        "classes": list(ds.classes) if ds.classes is not None else None,
        "sha256": ds.sha256, "size_bytes": ds.size_bytes, "source": ds.source,
        "created_at": _iso_utc(ds.created_at),
    }
