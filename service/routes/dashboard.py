"""The web dashboard at `/`: one static page plus its scripts, styles and vendored uPlot.

The page holds no data: its scripts call the /v1 API with the bearer token the user
pasted (kept in sessionStorage), so this blueprint needs no authentication of its own.
Under the page CSP (`script-src 'self'`) every script is a file, served under /assets
(Flask's own app-level /static route would shadow /static).
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

STATIC = Path(__file__).resolve().parent.parent / "static"

bp = Blueprint("dashboard", __name__, static_folder=str(STATIC), static_url_path="/assets")


@bp.get("/")
def dashboard():
    response = send_from_directory(STATIC / "dashboard", "index.html", mimetype="text/html")
    # The page is tiny and changes with each release: always revalidate.
    response.headers["Cache-Control"] = "no-cache"
    return response
