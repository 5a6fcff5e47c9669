#!/usr/bin/env bash
# The README demo: cleanup on volumes, an S3 prefix and a PostgreSQL table, all local and
# thrown away afterwards (see scripts/demo.py). Prepares .venv on first use.
# Set CLEANUP_DATABASE_URL to use an existing PostgreSQL instead of a throwaway one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CLEANUP_DATABASE_URL:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  pkg=$(grep -m1 '^postgresql' scripts/apt-packages.txt)
  if [ "$(id -u)" -ne 0 ]; then
    echo "the demo needs PostgreSQL's server binaries: apt-get install $pkg (or set CLEANUP_DATABASE_URL)" >&2
    exit 1
  fi
  echo "installing $pkg for the throwaway demo database"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
fi
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
