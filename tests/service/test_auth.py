import pytest

from jobs.auth import revoke_token
from jobs.db import session_scope
from jobs.models import Token


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer nope"])
def test_v1_refuses_missing_or_bad_tokens(client, header):
    headers = {"Authorization": header} if header else {}
    resp = client.get("/v1/jobs", headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_token_in_query_string_is_ignored(client, alice):
    token = alice["Authorization"].split()[1]
    assert client.get(f"/v1/jobs?access_token={token}").status_code == 401


def test_revoked_token_is_refused(client, alice, session_factory):
    assert client.get("/v1/jobs", headers=alice).status_code == 200
    with session_scope(session_factory) as session:
        for row in session.query(Token).all():
            revoke_token(session, row.id)
    assert client.get("/v1/jobs", headers=alice).status_code == 401


def test_tokens_are_stored_hashed(session_factory, alice):
    secret = alice["Authorization"].split()[1]
    with session_scope(session_factory) as session:
        hashes = [t.token_hash for t in session.query(Token)]
    assert secret not in hashes and all(len(h) == 64 for h in hashes)
