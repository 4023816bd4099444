#!/usr/bin/env bash
# Pre-release only: rebuild the single initial migration from jobs/models.py.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/*_0001_*.py
GRADTRACE_STATE_DIR="$tmp" DATABASE_URL="sqlite:///$tmp/m.db" .venv/bin/alembic revision --autogenerate -m "initial schema" --rev-id 0001 >/dev/null 2>&1
f=$(ls migrations/versions/*_0001_*.py)
sed -i 's/astext_type=Text()/astext_type=sa.Text()/; /### commands auto generated/d; /### end Alembic commands/d; s/^Create Date: .*/Create Date: 2026-11-28/' "$f"
rm -rf "$tmp"
echo "$f"
