#!/usr/bin/env bash
# The README demo: cleanup on volumes, an S3 prefix and a PostgreSQL table, all local and
# thrown away afterwards (see scripts/demo.py). Prepares .venv on first use.
# Set CLEANUP_DATABASE_URL to use an existing PostgreSQL instead of a throwaway one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CLEANUP_DATABASE_URL:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  # Only the server binaries for the throwaway database, not the whole test toolchain.
  bash scripts/apt-deps.sh "$(grep -m1 '^postgresql' scripts/apt-packages.txt)"
fi
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
