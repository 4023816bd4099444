"""Blob storage on the local filesystem: dataset arrays by content hash, other artefacts by key.

Layout under `root`:
  datasets/<sha[:2]>/<sha>.npz   content-addressed dataset blobs (written once, never rewritten)
  <kind>/<key>                   other artefacts (e.g. checkpoints), replaced atomically
  .scratch/<tmp>/                one upload's working files, removed when it ends (or, if
                                 its process was killed, by the next upload after a day)

Big blobs never pass through memory: they are written to a file in a scratch folder
(`stage`), hashed by reading the file back in chunks, and renamed into place (`put_staged`).

Every write goes to a temporary file in the target folder, is fsynced, then renamed over the
final name, so a reader sees either the old file or the complete new one, never a torn write.
Temporary files start with "." and keys may not, so a key can never name one.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SHA_RE = re.compile(r"[0-9a-f]{64}")
_KIND_RE = re.compile(r"[a-z0-9_-]{1,50}")
# A single path component: no separators, and no leading dot (so no ".", "..", temp files).
_KEY_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")
_DATASETS = "datasets"
_SCRATCH = ".scratch"
_HASH_CHUNK = 4 * 1024 * 1024
# A scratch folder untouched this long belongs to an upload whose process died (a request
# lives at most minutes), so the next upload removes it.
SCRATCH_STALE_S = 24 * 3600


class CorruptBlob(RuntimeError):
    """A stored blob no longer matches its content hash (disk or operator damage)."""


@dataclass(frozen=True)
class StagedBlob:
    """A complete blob file in a scratch folder, hashed by the store that staged it."""

    path: Path
    sha256: str
    size: int


class BlobStore:
    """Filesystem blob store rooted at `root` (created on first write)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # --- content-addressed dataset blobs -------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists)."""
        sha = _check_sha(sha256)
        return self.root / _DATASETS / sha[:2] / f"{sha}.npz"

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, sha256: str, data: bytes) -> Path:
        """Store `data` under its hash; an existing blob is kept as is (same hash, same bytes).

        The hash is verified so a caller bug cannot file content under a wrong address.
        """
        target = self.path(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("data does not match the given sha256")
        if not target.is_file():
            _atomic_write(target, data)
        return target

    def open(self, sha256: str) -> BinaryIO:
        """Open the blob for reading; FileNotFoundError if it is missing."""
        return self.path(sha256).open("rb")

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A fresh folder for one upload's working files, on the blobs' filesystem (so a
        staged blob is renamed into place, not copied); removed with its files on exit."""
        parent = self.root / _SCRATCH
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, time.time() - SCRATCH_STALE_S)
        with tempfile.TemporaryDirectory(prefix="upload-", dir=parent) as folder:
            yield Path(folder)

    def stage(self, write: Callable[[BinaryIO], None], folder: Path) -> StagedBlob:
        """Write a blob with `write(file)` into `folder` (from `scratch`) and hash it."""
        fd, tmp = tempfile.mkstemp(prefix=".blob-", dir=folder)
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return StagedBlob(Path(tmp), _file_sha256(Path(tmp)), Path(tmp).stat().st_size)

    def put_staged(self, staged: StagedBlob) -> Path:
        """Move a staged blob to its address; an existing blob is kept as is."""
        target = self.path(staged.sha256)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.path, target)
            _fsync_dir(target.parent)
        return target

    def verify(self, sha256: str) -> Path:
        """The blob's path, after checking its bytes against the hash in chunks
        (CorruptBlob on mismatch, FileNotFoundError if missing)."""
        path = self.path(sha256)
        if _file_sha256(path) != sha256:
            raise CorruptBlob(f"blob {sha256} does not match its hash")
        return path

    def read(self, sha256: str) -> bytes:
        """The blob's bytes, verified against the hash (CorruptBlob on mismatch)."""
        data = self.path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptBlob(f"blob {sha256} does not match its hash")
        return data

    def delete(self, sha256: str) -> bool:
        """Remove the blob; True if it existed. Fan-out folders are kept (a concurrent
        `put` may be about to write into one)."""
        return _unlink(self.path(sha256))

    # --- keyed artefacts -----------------------------------------------------------------

    def file_path(self, kind: str, key: str) -> Path:
        return self.root / _check_kind(kind) / _check_key(key)

    def put_file(self, kind: str, key: str, data: bytes) -> Path:
        """Write (or atomically replace) the artefact `kind/key`."""
        target = self.file_path(kind, key)
        _atomic_write(target, data)
        return target

    def read_file(self, kind: str, key: str) -> bytes:
        """The artefact's bytes; FileNotFoundError if it is missing."""
        return self.file_path(kind, key).read_bytes()

    def delete_file(self, kind: str, key: str) -> bool:
        """Remove the artefact; True if it existed."""
        return _unlink(self.file_path(kind, key))


def _remove_stale(parent: Path, cutoff: float) -> None:
    """Remove the scratch folders in `parent` whose folder and files were all last
    modified before `cutoff`; another process may remove one at the same time."""
    for folder in parent.iterdir():
        try:
            newest = max([folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.iterdir()])
        except (FileNotFoundError, NotADirectoryError):
            continue
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    return sha256


def _check_kind(kind: str) -> str:
    # "datasets" is the content-addressed area; keyed writes there could shadow blobs.
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind) or kind == _DATASETS:
        raise ValueError(f"invalid artefact kind: {kind!r}")
    return kind


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid artefact key: {key!r} (use A-Z a-z 0-9 _ - ., "
                         "not starting with '.')")
    return key


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _unlink(Path(tmp))
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
