#!/usr/bin/env bash
# pytest against servers in containers, for scripts/test.sh --containers (which has set
# up the venv). Builds the PostgreSQL 15 and moto images on the debootstrapped base when
# their recipe changed (tests/support/podman.py), serves podman's Docker-compatible API
# on a socket of this run's own, and points testcontainers at it. The fixtures then
# fail rather than fall back to local servers. Images: $CLEANUP_TEST_POSTGRES_IMAGE and
# $CLEANUP_TEST_S3_IMAGE when set, else the local builds.
# Usage: scripts/containers/run.sh [--check-created] [pytest args...]
#   --check-created  fail unless the engine's events show that a PostgreSQL and an S3
#                    container were created during the run
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
check=false
if [ "${1:-}" = "--check-created" ]; then
  check=true
  shift
fi

began=$(date +%s)
prepared=$(python -m tests.support.podman prepare)
driver="" postgres_image="" s3_image=""
while IFS='=' read -r key value; do
  case "$key" in
    driver) driver=$value ;;
    postgres_image) postgres_image=$value ;;
    s3_image) s3_image=$value ;;
  esac
done <<< "$prepared"
export CLEANUP_TEST_POSTGRES_IMAGE="${CLEANUP_TEST_POSTGRES_IMAGE:-$postgres_image}"
export CLEANUP_TEST_S3_IMAGE="${CLEANUP_TEST_S3_IMAGE:-$s3_image}"
echo "containers: storage driver $driver, base and images ready in $(($(date +%s) - began)) s:" \
  "$CLEANUP_TEST_POSTGRES_IMAGE $CLEANUP_TEST_S3_IMAGE"

# A short private path: unix socket paths are limited to 108 bytes.
sockdir=$(mktemp -d /tmp/cleanup-podman.XXXXXX)
socket="unix://$sockdir/podman.sock"
log=.cache/containers/service.log
python -m tests.support.podman serve "$driver" "$socket" >"$log" 2>&1 &
service=$!
trap 'kill "$service" 2>/dev/null || true; wait "$service" 2>/dev/null || true; rm -rf "$sockdir"' EXIT
deadline=$((SECONDS + 60))
until podman --remote --url "$socket" version >/dev/null 2>&1; do
  if ! kill -0 "$service" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "podman system service did not come up on $socket:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done

export DOCKER_HOST="$socket" \
  TESTCONTAINERS_RYUK_DISABLED=true \
  TESTCONTAINERS_CONNECTION_MODE=docker_host \
  TC_HOST=127.0.0.1 \
  CLEANUP_TEST_CONTAINERS=1
status=0
pytest "$@" || status=$?
expected=()
if [ "$check" = true ]; then
  expected=("$CLEANUP_TEST_POSTGRES_IMAGE" "$CLEANUP_TEST_S3_IMAGE")
fi
if ! python -m tests.support.podman created "$driver" "$began" "${expected[@]}"; then
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
