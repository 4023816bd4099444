"""/v1/admin: users, tokens and every user's jobs, for users with the admin role (403 else).

Granting the admin role is deliberately not an API action: only `gradtrace-admin
create-token USER --admin`, run on the server, can do it.
"""
from __future__ import annotations

import hmac
from datetime import timedelta

from flask import current_app, g
from flask_openapi3 import APIBlueprint, Tag

from jobs.admin import admin_job_view, list_all_jobs
from jobs.auth import (get_or_create_user, issue_token, list_tokens, list_users, revoke_token,
                       token_to_dict, user_to_dict)
from jobs.errors import Conflict
from jobs.models import Token
from service.errors import ApiError
from service.schemas import (AdminJobQuery, AdminPageQuery, AdminTokenCreate, AdminTokenQuery,
                             IdPath)
from service.session import db

bp = APIBlueprint("admin", __name__, url_prefix="/v1/admin", abp_tags=[Tag(name="admin")],
                  abp_security=[{"bearer": []}], abp_responses={403: None})


@bp.before_request
def require_admin() -> None:
    # Runs after the app's authentication hook, so g.user is set for every /v1 request.
    user = g.get("user")
    if user is None or not user.is_admin:
        raise ApiError(403, "forbidden", "this route needs the admin role")


@bp.get("/users", summary="Every user (admin)")
def admin_list_users(query: AdminPageQuery):
    rows = list_users(db(), limit=query.limit, offset=query.offset)
    return {"items": [user_to_dict(u) for u in rows]}


@bp.get("/tokens", summary="Tokens, optionally of one user; never their secrets (admin)")
def admin_list_tokens(query: AdminTokenQuery):
    rows = list_tokens(db(), user_id=query.user_id, limit=query.limit, offset=query.offset)
    return {"items": [token_to_dict(t) for t in rows]}


@bp.post("/tokens", summary="Create a token for a user, creating the user if new (admin)",
         responses={201: None, 422: None})
def admin_create_token(body: AdminTokenCreate):
    session = db()
    user = get_or_create_user(session, body.user)
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row, secret = issue_token(session, user, current_app.config["GRADTRACE"].token_pepper,
                              label=body.label, expires_in=expires)
    session.commit()
    # The secret is shown this once; only its peppered hash is kept.
    return {**token_to_dict(row), "token": secret, "user": user_to_dict(user)}, 201


@bp.post("/tokens/<id>/revoke", summary="Revoke a token (admin)",
         responses={200: None, 404: None, 409: None})
def admin_revoke_token(path: IdPath):
    session = db()
    if _is_own_token(session, path.id):
        raise Conflict("this is the token of the current request; revoking it would lock you "
                       "out: use another admin token or `gradtrace-admin revoke-token`")
    row = revoke_token(session, path.id)
    session.commit()
    return token_to_dict(row)


def _is_own_token(session, token_id: str) -> bool:
    row = session.get(Token, token_id)
    return row is not None and hmac.compare_digest(row.token_hash, g.token_digest)


@bp.get("/jobs", summary="Every user's jobs, newest first (admin)")
def admin_list_jobs(query: AdminJobQuery):
    rows = list_all_jobs(db(), owner_id=query.owner_id, status=query.status,
                         limit=query.limit, offset=query.offset)
    return {"items": [admin_job_view(j) for j in rows]}
