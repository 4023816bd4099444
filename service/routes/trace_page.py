"""The /trace page: the network drawn with one trace's forward values and errors.

A static, self-contained page (service/static/trace/); it reads the job id from
`?job=` and calls the API with the user's bearer token, like the dashboard.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

FOLDER = Path(__file__).resolve().parent.parent / "static" / "trace"

bp = Blueprint("trace_page", __name__, static_folder=str(FOLDER),
               static_url_path="/trace/static")


@bp.get("/trace")
def trace_page():
    return send_from_directory(FOLDER, "index.html", mimetype="text/html")
