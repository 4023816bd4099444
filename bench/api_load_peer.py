"""The bare-Flask peer of bench/api_load.py: the same two paths, a small constant JSON each.

Served by gunicorn with service/gunicorn_conf.py (same worker class, processes, threads,
access log), so the ratio measures what gradtrace adds per request: authentication, rate
limiting, the database session and queries, the views.

    gunicorn --config service/gunicorn_conf.py bench.api_load_peer:app
"""
from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/v1/jobs/<job_id>")
def job(job_id: str):
    return {"id": job_id, "status": "running", "progress": {"epoch": 1, "epochs": 2}}


@app.get("/v1/jobs/<job_id>/metrics")
def metrics(job_id: str):
    return {"job_id": job_id, "status": "running", "epochs": [1], "train_loss": [0.5]}
