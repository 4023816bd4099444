"""Shared domain package: settings, the database schema, sessions and the job logic.

Both the HTTP service (`service/`) and the Celery worker (`worker/`) call into this
package; it never imports either of them, nor Flask or Celery. It may import `mlp`,
numpy, SQLAlchemy, pydantic, orjson, the PostgreSQL driver psycopg (for its wire formats:
`pg_arrays.py`) and the standard library.
"""
