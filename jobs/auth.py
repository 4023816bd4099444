"""Users and bearer tokens. Tokens are random; only a peppered SHA-256 is stored.

Secrets are compared through their HMAC digests (a lookup by digest, then
`hmac.compare_digest`), so response timing does not reveal how much of a guess matched.

The API authenticates through `authenticate_cached`: a token that was valid is trusted for
at most TOKEN_CACHE_S without asking the database again. Bounds: expiry is checked on every
request (immediate); a revocation made through `revoke_token` in the same process is
immediate; one made by another process (`gradtrace-admin revoke-token`, the other gunicorn
workers) takes effect within TOKEN_CACHE_S. Unknown, revoked and expired tokens are never
cached, so a new token works at once and every refusal still reaches the database.
When a token's entry is due, one thread per process looks it up and the others wait for
that answer instead of each asking (under load every thread of a process found the
entry due at the same instant, and the look-ups cost the API 7 % of its time).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from jobs.clock import aware
from jobs.job_views import iso
from jobs.errors import InvalidInput, NotFound, Unauthorized
from jobs.models import Token, User, utcnow

TOKEN_PREFIX = "gt_"
TOKEN_CACHE_S = 1.0       # how long another process's revocation may go unnoticed
TOKEN_CACHE_SIZE = 10_000
# Look-ups of one digest are serialised by one of these locks (a fixed set: unknown tokens
# must not grow a table; two tokens sharing a lock only queue their rare look-ups).
_LOOKUP_LOCKS = tuple(threading.Lock() for _ in range(64))


def hash_token(token: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()


def get_or_create_user(session: Session, name: str, *, is_admin: bool = False) -> User:
    if not name or len(name) > 100 or not name.isprintable():
        raise InvalidInput("user name must be 1 to 100 printable characters", [("name", "invalid")])
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, is_admin=is_admin)
        session.add(user)
        session.flush()
    elif is_admin and not user.is_admin:
        user.is_admin = True
    return user


def issue_token(session: Session, user: User, pepper: str, *, label: str = "",
                expires_in: timedelta | None = None) -> tuple[Token, str]:
    """Create a token for `user`; returns the row and the secret (shown once)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(timezone.utc) + expires_in if expires_in else None
    row = Token(user_id=user.id, token_hash=hash_token(secret, pepper), label=label,
                expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, secret


def revoke_token(session: Session, token_id: str) -> Token:
    row = session.get(Token, token_id)
    if row is None:
        raise NotFound(f"token {token_id} does not exist")
    row.revoked_at = row.revoked_at or utcnow()
    digest = row.token_hash
    forget_token(digest)
    # Again once the caller commits: another thread of this process that looks the token
    # up in between still sees it valid, and would cache it so.
    event.listen(session, "after_commit", lambda _session: forget_token(digest), once=True)
    return row


def authenticate(session: Session, secret: str, pepper: str) -> User:
    """Return the token's user, or raise Unauthorized for unknown, revoked or expired."""
    # The lookup is by hash, so timing does not reveal a prefix of a stored secret;
    # compare_digest guards the final equality as well.
    return _lookup(session, hash_token(secret, pepper))[0]


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a request, as the API keeps it (no database session)."""

    id: str
    name: str
    is_admin: bool


@dataclass(frozen=True)
class _Entry:
    caller: Caller
    expires_at: datetime | None
    checked: float  # time.monotonic() of the database look-up


_valid: dict[str, _Entry] = {}
_valid_lock = threading.Lock()


def authenticate_cached(session_of, digest: str) -> Caller:
    """`authenticate` by the token's digest, trusting a recent success (TOKEN_CACHE_S).

    `session_of()` gives the session to ask, called only on a cache miss.
    """
    entry = _valid.get(digest)
    if entry is None or time.monotonic() - entry.checked >= TOKEN_CACHE_S:
        entry = _look_up_once(session_of, digest)
    # Also after a look-up: another thread's answer may be older than the token's expiry.
    if _expired(entry.expires_at):
        forget_token(digest)
        raise Unauthorized("token has expired")
    return entry.caller


def _look_up_once(session_of, digest: str) -> _Entry:
    """Ask the database for ``digest``, unless another thread did while this one waited.

    An answer is taken if it is under TOKEN_CACHE_S old, or if its look-up began after
    this request arrived (as fresh as this request's own would be; so a slow database
    costs one look-up after another at most twice, not once per waiting thread). Past
    TOKEN_CACHE_S of waiting, the look-up runs unlocked: during an outage, requests must
    fail side by side, not one pool time-out after another.
    """
    arrived = time.monotonic()
    lock = _LOOKUP_LOCKS[hash(digest) % len(_LOOKUP_LOCKS)]
    locked = lock.acquire(timeout=TOKEN_CACHE_S)
    try:
        entry = _valid.get(digest)
        if entry is not None and (entry.checked >= arrived
                                  or time.monotonic() - entry.checked < TOKEN_CACHE_S):
            return entry
        now = time.monotonic()
        user, row = _lookup(session_of(), digest)
        entry = _Entry(Caller(user.id, user.name, bool(user.is_admin)), row.expires_at, now)
        with _valid_lock:
            if len(_valid) >= TOKEN_CACHE_SIZE:
                _valid.clear()  # rare (10,000 live tokens in one second); re-read from the db
            _valid[digest] = entry
        return entry
    finally:
        if locked:
            lock.release()


def forget_token(digest: str) -> None:
    """Drop a token from this process's cache (its revocation, seen here, is immediate)."""
    with _valid_lock:
        _valid.pop(digest, None)


def _expired(expires_at: datetime | None) -> bool:
    return expires_at is not None and aware(expires_at) <= datetime.now(timezone.utc)


def _lookup(session: Session, digest: str) -> tuple[User, Token]:
    row = session.scalar(select(Token).where(Token.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("invalid or unknown token")
    if row.revoked_at is not None:
        raise Unauthorized("token has been revoked")
    if _expired(row.expires_at):
        raise Unauthorized("token has expired")
    return session.get(User, row.user_id), row


def list_users(session: Session, *, limit: int = 100, offset: int = 0) -> list[User]:
    """Every user, oldest first (administrators only: the caller checks the role)."""
    query = select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def list_tokens(session: Session, *, user_id: str | None = None, limit: int = 100,
                offset: int = 0) -> list[Token]:
    """Token rows (never their hashes in any view), newest first."""
    query = select(Token)
    if user_id is not None:
        query = query.where(Token.user_id == user_id)
    query = query.order_by(Token.created_at.desc(), Token.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def get_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist", [("user_id", "no such user")])
    return user


def user_to_dict(user: User) -> dict:
    return {"id": user.id, "name": user.name, "is_admin": bool(user.is_admin),
            "created_at": iso(user.created_at)}


def token_to_dict(token: Token) -> dict:
    """A token's metadata; the secret is shown once at creation and its hash never."""
    now = datetime.now(timezone.utc)
    expired = token.expires_at is not None and aware(token.expires_at) <= now
    return {"id": token.id, "user_id": token.user_id, "label": token.label,
            "created_at": iso(token.created_at), "expires_at": iso(token.expires_at),
            "revoked_at": iso(token.revoked_at),
            "active": token.revoked_at is None and not expired}
