#!/usr/bin/env bash
# The Quick start's demo: cleanup on volumes, an S3 prefix and a PostgreSQL table, all local and
# thrown away afterwards (see scripts/demo.py). Prepares .venv on first use.
# Set CLEANUP_DATABASE_URL to use an existing PostgreSQL instead of a throwaway one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CLEANUP_DATABASE_URL:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  # Only the server binaries for the throwaway database, not the whole test toolchain.
  bash scripts/apt-deps.sh "$(grep -m1 '^postgresql' scripts/apt-packages.txt)"
fi
# Only what the demo needs (the `demo` extra: the job's S3 and PostgreSQL clients and
# moto's S3 server), not the test or dev tools. A .venv that already has it (a
# developer's, with the test extra) is used as it is rather than re-synced to less.
if ! .venv/bin/python -c 'import cleanup, botocore, boto3, psycopg, moto.server' 2>/dev/null; then
  bash scripts/bootstrap.sh demo
fi
exec .venv/bin/python scripts/demo.py "$@"
