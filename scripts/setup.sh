#!/usr/bin/env bash
# Installs everything csi-ota needs on a fresh Debian/Ubuntu machine: the apt
# packages (compilers, libcurl, OpenSSL, cmocka, Mosquitto, PostgreSQL, nginx)
# and the Python package with its test extras. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake pkg-config
  libcurl4-openssl-dev libssl-dev libcmocka-dev
  mosquitto mosquitto-clients postgresql nginx-light
  clang-format openssl tzdata
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing apt packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packaged services must not hold the ports the tests use.
  for svc in mosquitto nginx postgresql; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import csi_ota, pytest_embedded' >/dev/null 2>&1 || [ pyproject.toml -nt .setup-stamp ]; then
  echo "setup: installing the csi-ota Python package with test extras"
  "$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
  touch .setup-stamp
fi
echo "setup: done"
