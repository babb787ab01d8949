#!/usr/bin/env bash
# The Python client's test environments, outside the checkout and readable by every user
# (unprivileged test peers run the installed package as uid 65534):
#
#   $DISKSEQD_PY_VENVS/debian  Debian 12's python3 + python3-protobuf (4.21) + python3-pytest,
#                              a venv with --system-site-packages
#   $DISKSEQD_PY_VENVS/pypi    the newest protobuf and pytest the package index offers
#
# DISKSEQD_PY_VENVS defaults to /opt/diskseqd-test/venvs. Idempotent: Debian packages and
# venvs are made only when missing. Then the client is (re)installed from this checkout's
# current source into each venv, built from a fresh copy in a temp dir (no build tree is
# left in the checkout, and none can be stale).
#
#   scripts/setup-python-venvs.sh               set up what is missing, then install the client
#   scripts/setup-python-venvs.sh --package-only [debian|pypi]
#                                               only reinstall the client (venvs must exist)
set -euo pipefail
umask 022
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${DISKSEQD_PY_VENVS:-/opt/diskseqd-test/venvs}"
python=/usr/bin/python3

venv_ok() { # venv -> 0 when it imports protobuf and pytest
  [ -x "$root/$1/bin/python" ] && "$root/$1/bin/python" -c 'import google.protobuf, pytest, setuptools, wheel' 2>/dev/null
}

install_client() { # venv
  local build
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' RETURN
  mkdir -p "$build/client" "$build/proto"
  cp -r "$repo/client/python" "$build/client/python"
  cp "$repo/proto/diskseqd.proto" "$build/proto/"
  rm -rf "$build/client/python/build" "$build/client/python/src/"*.egg-info
  # --no-build-isolation: build with the venv's own setuptools and wheel (no index needed).
  "$root/$1/bin/python" -m pip install --quiet --force-reinstall --no-deps --no-build-isolation \
    --disable-pip-version-check "$build/client/python"
  chmod -R a+rX "$root/$1"
}

if [ "${1:-}" = "--package-only" ]; then
  for venv in ${2:-debian pypi}; do
    venv_ok "$venv" || { echo "setup-python-venvs: $root/$venv is missing or broken; run $0" >&2; exit 1; }
    install_client "$venv"
  done
  exit 0
fi

need=()
for package in python3-venv python3-protobuf python3-pytest python3-setuptools python3-wheel protobuf-compiler; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup-python-venvs: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

mkdir -p "$root"
chmod 755 "$root" "$(dirname "$root")"
if ! venv_ok debian; then
  echo "setup-python-venvs: creating $root/debian (Debian's protobuf)"
  rm -rf "$root/debian"
  "$python" -m venv --system-site-packages "$root/debian"
fi
if ! venv_ok pypi; then
  echo "setup-python-venvs: creating $root/pypi (protobuf from the package index)"
  rm -rf "$root/pypi"
  "$python" -m venv "$root/pypi"
  "$root/pypi/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade protobuf pytest setuptools wheel
fi
for venv in debian pypi; do
  install_client "$venv"
  echo "setup-python-venvs: $root/$venv: $("$root/$venv/bin/python" -c 'import google.protobuf as p, diskseqd; print("protobuf", p.__version__, "diskseqd", diskseqd.__version__)')"
done
