def test_health_needs_no_auth(client):
    resp = client.get("/health")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_ready_reports_database_and_broker(client):
    body = client.get("/ready").get_json()
    assert body["checks"] == {"database": True, "broker": True}


def test_ready_is_503_when_database_is_unreachable(settings, tmp_path):
    from service import create_app

    broken = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/no/such/dir.db"})
    resp = create_app(broken).test_client().get("/ready")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["database"] is False
