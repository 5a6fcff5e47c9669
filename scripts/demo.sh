#!/usr/bin/env bash
# The README's demo: installs the project into .venv if needed, then runs scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
