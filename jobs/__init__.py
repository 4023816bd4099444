"""Shared domain package: settings, the database schema, sessions and the job logic.

Both the HTTP service (`service/`) and the Celery worker (`worker/`) call into this
package; it never imports either of them, nor Flask or Celery. It may import `mlp`,
numpy, SQLAlchemy, pydantic and the standard library.
"""
