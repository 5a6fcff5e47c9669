#!/usr/bin/env bash
# Installs missing Debian packages: those named as arguments, or else every package
# listed in scripts/apt-packages.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
  wanted=("$@")
else
  wanted=()
  while read -r pkg _; do
    case "$pkg" in ''|'#'*) continue ;; esac
    wanted+=("$pkg")
  done < scripts/apt-packages.txt
fi
missing=()
for pkg in "${wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
