#!/usr/bin/env bash
# Installs everything csi-ota needs on a fresh Debian/Ubuntu machine:
#   1. the apt packages (compilers, libcurl, OpenSSL, cmocka, Mosquitto, PostgreSQL,
#      nginx, Debian's python3 with venv and headers) — with sudo unless root;
#   2. the project's virtual environment .venv in this checkout, made with Debian's
#      python3 (PEP 668: nothing is installed into a system interpreter), holding
#      this checkout's csi-ota package (editable) and its test extras.
# Idempotent and safe to re-run; runs non-interactively (CI=true, no stdin).
# Afterwards: `. .venv/bin/activate` puts `csi-ota` on PATH.
#
# Environment: CSI_OTA_BASE_PYTHON, the interpreter that creates .venv (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

APT_PACKAGES=(
  build-essential cmake pkg-config git
  python3 python3-venv python3-dev
  libcurl4-openssl-dev libssl-dev libcmocka-dev
  libmbedtls-dev libmosquitto-dev
  mosquitto mosquitto-clients postgresql nginx-light
  clang-format openssl tzdata
  chromium chromium-driver
  clang libclang-rt-14-dev
)

die() {
  echo "setup: error: $*" >&2
  exit 1
}

# ---- 1. apt packages ------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing apt packages (${missing[*]}) and no sudo; run as root"
    SUDO=(sudo)
    # No terminal (CI): never wait for a password prompt.
    [ -t 0 ] || SUDO=(sudo -n)
  fi
  echo "setup: installing apt packages: ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" </dev/null >/dev/null
  # The packaged services must not hold the ports the tests use.
  for svc in mosquitto nginx postgresql; do
    "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 ||
      "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# ---- 2. the project's virtual environment ---------------------------------------------
BASE_PYTHON=${CSI_OTA_BASE_PYTHON:-/usr/bin/python3}
VENV=$ROOT/.venv
[ -x "$BASE_PYTHON" ] || die "$BASE_PYTHON not found (set CSI_OTA_BASE_PYTHON to a Python >= 3.11)"
"$BASE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$BASE_PYTHON is $("$BASE_PYTHON" -V 2>&1); csi-ota needs Python >= 3.11"

# `sudo ./scripts/setup.sh` from a user's checkout: the environment belongs to that user.
AS_OWNER=()
if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] &&
  [ "$(stat -c %U "$ROOT")" = "$SUDO_USER" ]; then
  AS_OWNER=(sudo -u "$SUDO_USER" -H)
fi

# What the environment was set up from: this checkout, this interpreter, this pyproject.
# A venv copied or moved from elsewhere, made by another Python, or installed from an
# older pyproject.toml is redone, so csi-ota and the simulator always come from here.
stamp="$VENV/.csi-ota-setup"
want="root=$ROOT
base_python=$(readlink -f "$BASE_PYTHON") $("$BASE_PYTHON" -c 'import sys; print(sys.version.split()[0])')
pyproject=$(sha256sum pyproject.toml | cut -d' ' -f1)"

venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 &&
    [ "$(head -n 2 "$stamp" 2>/dev/null)" = "$(printf '%s\n' "$want" | head -n 2)" ]
}
installed_here() {
  # csi_ota must be imported from this checkout's host_tools (editable install).
  "$VENV/bin/python" - "$ROOT/host_tools" <<'PY' >/dev/null 2>&1
import sys
from pathlib import Path
import csi_ota, pytest_embedded  # noqa: F401
sys.exit(Path(csi_ota.__file__).resolve().parent.parent != Path(sys.argv[1]).resolve())
PY
}

if ! venv_ok; then
  if [ -e "$VENV" ]; then
    echo "setup: $VENV was made elsewhere or by another Python; recreating it"
    rm -rf "$VENV"
  fi
  echo "setup: creating the virtual environment $VENV with $BASE_PYTHON"
  "${AS_OWNER[@]}" "$BASE_PYTHON" -m venv "$VENV" ||
    die "could not create $VENV; install Debian's python3-venv (apt-get install python3-venv)"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! installed_here; then
  echo "setup: installing this checkout's csi-ota package with test extras into $VENV"
  "${AS_OWNER[@]}" "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" </dev/null
  installed_here || die "csi_ota in $VENV does not come from $ROOT/host_tools after the install"
  "${AS_OWNER[@]}" sh -c 'printf "%s\n" "$1" >"$2"' _ "$want" "$stamp"
fi
echo "setup: done (activate with: . .venv/bin/activate)"
