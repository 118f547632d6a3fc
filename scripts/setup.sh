#!/usr/bin/env bash
# One-time setup on a fresh Debian/Ubuntu machine: system packages (cmake, g++,
# oneDNN), npm dependencies (which builds the native addon), and the real
# all-MiniLM-L6-v2 model into models/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in cmake g++ libdnnl-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
python3 scripts/fetch-model.py
