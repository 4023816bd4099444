"""BlobStore: content-addressed dataset blobs and keyed artefacts on the filesystem."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from jobs.storage import SCRATCH_STALE_S, CorruptBlob


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_lays_out_by_hash_prefix_and_reads_back(store):
    data = b"hello arrays"
    path = store.put(sha(data), data)
    assert path == store.root / "datasets" / sha(data)[:2] / f"{sha(data)}.npz"
    assert store.exists(sha(data))
    assert store.read(sha(data)) == data
    with store.open(sha(data)) as f:
        assert f.read() == data


def test_put_leaves_no_temporary_files(store):
    data = b"x" * 1000
    store.put(sha(data), data)
    assert os.listdir(store.path(sha(data)).parent) == [f"{sha(data)}.npz"]


def test_put_does_not_rewrite_an_existing_blob(store):
    data = b"same content"
    path = store.put(sha(data), data)
    os.utime(path, (1_000_000, 1_000_000))
    store.put(sha(data), data)
    assert path.stat().st_mtime == 1_000_000


def test_put_refuses_data_that_does_not_match_the_hash(store):
    with pytest.raises(ValueError):
        store.put(sha(b"a"), b"b")
    assert not store.exists(sha(b"a"))


def test_read_detects_a_corrupted_blob(store):
    data = b"original"
    store.put(sha(data), data).write_bytes(b"tampered")
    with pytest.raises(CorruptBlob):
        store.read(sha(data))


def test_missing_blob(store):
    missing = sha(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(FileNotFoundError):
        store.read(missing)
    assert store.delete(missing) is False


def test_delete(store):
    data = b"to delete"
    store.put(sha(data), data)
    assert store.delete(sha(data)) is True
    assert not store.exists(sha(data))


@pytest.mark.parametrize("bad", ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64, None])
def test_bad_hashes_are_refused(store, bad):
    with pytest.raises(ValueError):
        store.path(bad)


def test_keyed_files_round_trip_and_replace(store):
    path = store.put_file("checkpoints", "job-1.v2_final", b"one")
    assert path == store.root / "checkpoints" / "job-1.v2_final"
    store.put_file("checkpoints", "job-1.v2_final", b"two")
    assert store.read_file("checkpoints", "job-1.v2_final") == b"two"
    assert store.delete_file("checkpoints", "job-1.v2_final") is True
    assert store.delete_file("checkpoints", "job-1.v2_final") is False
    with pytest.raises(FileNotFoundError):
        store.read_file("checkpoints", "job-1.v2_final")


@pytest.mark.parametrize("key", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "x\x00",
                                 "é", "a" * 201])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(ValueError):
        store.put_file("checkpoints", key, b"x")
    assert not store.root.exists()  # refused before anything was created


@pytest.mark.parametrize("kind", ["", "..", "a/b", "Checkpoints", "datasets"])
def test_unsafe_or_reserved_kinds_are_refused(store, kind):
    with pytest.raises(ValueError):
        store.put_file(kind, "key", b"x")
    assert not store.root.exists()


def test_failed_write_removes_its_temporary_file(store, monkeypatch):
    def boom(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        store.put_file("checkpoints", "k", b"data")
    folder = store.root / "checkpoints"
    assert list(folder.iterdir()) == []


# --- staged blobs (written in a scratch folder, hashed from disk, renamed into place) -----

def test_staged_blob_is_hashed_from_its_file_and_renamed_into_place(store):
    data = b"staged " * 1000
    with store.scratch() as folder:
        assert folder.parent == store.root / ".scratch"
        staged = store.stage(lambda f: f.write(data), folder)
        assert (staged.sha256, staged.size) == (sha(data), len(data))
        assert not store.exists(sha(data))  # nothing at the address before put_staged
        path = store.put_staged(staged)
        assert not staged.path.exists()
    assert path == store.path(sha(data)) and store.read(sha(data)) == data
    assert os.listdir(path.parent) == [path.name]
    assert os.listdir(store.root / ".scratch") == []  # the folder went with the block


def test_put_staged_keeps_an_existing_blob(store):
    data = b"same content"
    path = store.put(sha(data), data)
    os.utime(path, (1_000_000, 1_000_000))
    with store.scratch() as folder:
        store.put_staged(store.stage(lambda f: f.write(data), folder))
    assert path.stat().st_mtime == 1_000_000 and store.read(sha(data)) == data


def test_scratch_is_removed_when_the_block_fails(store):
    with pytest.raises(RuntimeError), store.scratch() as folder:
        (folder / "rows.raw").write_bytes(b"x")
        raise RuntimeError("parse failed")
    assert os.listdir(store.root / ".scratch") == []


def _killed_upload(store, name: str, age_s: float, file_age_s: float | None = None) -> Path:
    """A scratch folder left by an upload whose process died `age_s` ago."""
    folder = store.root / ".scratch" / name
    folder.mkdir(parents=True)
    then = time.time() - age_s
    if file_age_s is not None:
        part = folder / "body.part"
        part.write_bytes(b"x")
        os.utime(part, (time.time() - file_age_s,) * 2)
    os.utime(folder, (then, then))
    return folder


def test_the_next_upload_removes_scratch_left_by_killed_ones(store):
    day = SCRATCH_STALE_S
    stale = _killed_upload(store, "upload-stale", day + 60, file_age_s=day + 60)
    empty = _killed_upload(store, "upload-empty", day + 60)
    fresh = _killed_upload(store, "upload-fresh", 60)
    writing = _killed_upload(store, "upload-writing", day + 60, file_age_s=1)  # still streaming
    with store.scratch() as folder:
        assert sorted(p.name for p in folder.parent.iterdir()) == \
            sorted([fresh.name, writing.name, folder.name])
    assert not stale.exists() and not empty.exists()


def test_verify_checks_the_hash_without_reading_into_memory(store):
    data = b"original"
    path = store.put(sha(data), data)
    assert store.verify(sha(data)) == path
    path.write_bytes(b"tampered")
    with pytest.raises(CorruptBlob):
        store.verify(sha(data))
    with pytest.raises(FileNotFoundError):
        store.verify(sha(b"missing"))
