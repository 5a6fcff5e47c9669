#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, lints, type-checks, tests.
# Usage: scripts/test.sh [--quick] [--containers] [pytest args...]
#   --quick       the edit-test loop: no apt, no root needed; lint, types and the core,
#                 volume and chart tests (or the pytest args given), image test left out
#   --containers  the same tests, with PostgreSQL and S3 servers in containers started by
#                 testcontainers through podman, never local ones (scripts/containers/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
marker=()
quick=false
containers=false
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=true marker=(-m "not slow") ;;
    --containers) containers=true ;;
    *) break ;;
  esac
  shift
done
[ "$quick" = true ] || bash scripts/apt-deps.sh
bash scripts/bootstrap.sh
for hook in scripts/setup.d/*.sh; do
  [ -e "$hook" ] && bash "$hook"
done
export PATH="$PWD/.venv/bin:$PWD/.cache/bin:$PATH"
uv lock --check --offline 2>/dev/null || uv lock --check  # uv.lock is current (online only to say why not)
bash scripts/generate.sh --check  # no derived file (chart schema, reference page) is stale
# The documentation site, into .cache/site: a broken link or anchor fails (strict in mkdocs.yml).
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet
ruff check .
ruff format --check .
mypy --strict cleanup
if [ "$containers" = true ]; then
  check=()
  # The whole suite runs the PostgreSQL and S3 fixtures: the engine must show both containers.
  [ $# -gt 0 ] || check=(--check-created)
  exec bash scripts/containers/run.sh "${check[@]}" "${marker[@]}" "$@"
fi
if [ "$quick" = true ]; then
  named=false
  for arg in "$@"; do
    [ -e "${arg%%::*}" ] && named=true
  done
  # Options alone (-x, -q, -p no:cacheprovider) still run the quick tier's folders.
  [ "$named" = true ] || set -- "$@" tests/core tests/volumes tests/deploy
fi
pytest "${marker[@]}" "$@"
