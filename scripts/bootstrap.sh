#!/usr/bin/env bash
# Creates .venv at the repository root and installs the project into it, editable, with the
# exact versions of uv.lock: the test, dev and docs extras, or the extras named as arguments
# (`scripts/bootstrap.sh all` for the job alone, `scripts/bootstrap.sh demo` for the demo).
# uv itself, at the version pyproject.toml pins (tool.uv.required-version), is installed from
# PyPI into .cache/uv and linked as .cache/bin/uv.
# Idempotent and quick: syncs only when uv.lock, pyproject.toml or the extras changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ $# -gt 0 ] || set -- test dev docs

uv_version=$("$python" -c 'import tomllib
print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["uv"]["required-version"].lstrip("="))')
uv=.cache/uv/$uv_version/bin/uv
if [ ! -x "$uv" ]; then
  rm -rf ".cache/uv/$uv_version.partial"
  # pip's output (index warnings included) is shown only when it fails: the demo's first
  # screen is the job, not the installer.
  mkdir -p .cache/uv
  if ! "$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --no-warn-script-location --target ".cache/uv/$uv_version.partial" "uv==$uv_version" \
    >".cache/uv/pip.log" 2>&1; then
    cat .cache/uv/pip.log >&2
    exit 1
  fi
  # Renamed only when complete, so an interrupted install is never mistaken for one.
  mv ".cache/uv/$uv_version.partial" ".cache/uv/$uv_version"
fi
mkdir -p .cache/bin
ln -sfn "../uv/$uv_version/bin/uv" .cache/bin/uv

# A venv of python's own (with pip, which uv sync leaves in place: the benchmarks install
# their peers with it), then uv sync makes its packages exactly the lock's.
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.synced-$(cat uv.lock pyproject.toml <(echo "$uv_version $*") | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "bootstrap: installing .venv from uv.lock (extras: $*)" >&2
  extras=()
  for extra in "$@"; do
    extras+=(--extra "$extra")
  done
  # --frozen: install what uv.lock says, never re-resolve (scripts/test.sh checks it is current).
  # No Python is ever downloaded: the venv's own interpreter is the one used.
  UV_PROJECT_ENVIRONMENT=.venv UV_PYTHON_DOWNLOADS=never \
    "$uv" sync --quiet --frozen "${extras[@]}"
  rm -f .venv/.synced-* .venv/.installed-*
  touch "$stamp"
fi
