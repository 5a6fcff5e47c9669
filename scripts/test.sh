#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, lints, type-checks, tests.
# Usage: scripts/test.sh [--quick] [pytest args...]   (--quick skips the slow image build test)
set -euo pipefail
cd "$(dirname "$0")/.."
marker=()
if [ "${1:-}" = "--quick" ]; then
  shift
  marker=(-m "not slow")
fi
bash scripts/apt-deps.sh
bash scripts/bootstrap.sh
for hook in scripts/setup.d/*.sh; do
  [ -e "$hook" ] && bash "$hook"
done
export PATH="$PWD/.venv/bin:$PWD/.cache/bin:$PATH"
uv lock --check --offline 2>/dev/null || uv lock --check  # uv.lock is current (online only to say why not)
ruff check .
ruff format --check .
mypy --strict cleanup
pytest "${marker[@]}" "$@"
