"""The process's copy of running jobs' metric columns (jobs/running_columns.py), shared by
the routes that read metrics (results, plots) and by gunicorn's threads.

Imports Flask and `jobs` modules only.
"""
from __future__ import annotations

from flask import Flask, current_app

from jobs.running_columns import RunningColumns

EXTENSION = "gradtrace_running_columns"


def init_metric_columns(app: Flask) -> None:
    app.extensions[EXTENSION] = RunningColumns()


def running_columns() -> RunningColumns:
    return current_app.extensions[EXTENSION]
