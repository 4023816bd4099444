"""One database session per request, closed at teardown; views commit explicitly."""
from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from jobs.db import make_engine, make_sessionmaker


def init_db(app: Flask) -> None:
    settings = app.config["GRADTRACE"]
    engine = make_engine(settings.database_url, pool_size=settings.api_db_pool_size)
    app.extensions["gradtrace_engine"] = engine
    app.extensions["gradtrace_sessions"] = make_sessionmaker(engine)
    # For single-statement reads (the poll cache's version check): no transaction, so no
    # BEGIN and ROLLBACK round trips around the one query.
    app.extensions["gradtrace_autocommit"] = engine.execution_options(isolation_level="AUTOCOMMIT")
    app.teardown_appcontext(_close_session)


def db() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["gradtrace_sessions"]()
    return g.db_session


def _close_session(_exc) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def autocommit_connection() -> Connection:
    """A pooled connection outside any transaction, for one read; use it as a context manager."""
    return current_app.extensions["gradtrace_autocommit"].connect()
