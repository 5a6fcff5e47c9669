#!/usr/bin/env bash
# Regenerates every checked-in file derived from the configuration's declared keys.
# Usage: scripts/generate.sh [--check]   (--check: exit 1 naming each stale file, write nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" scripts/generate.py "$@"
