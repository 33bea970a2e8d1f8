#!/usr/bin/env bash
# ARM64 emulation for `mbk verify --arm`: the phone's CPU, run on this machine through QEMU user mode.
#   1. qemu-user >= 8 from bookworm-backports (bookworm's 7.2 passes the host /proc/cpuinfo through
#      and onnxruntime >= 1.23 crashes on import; 10.x fakes an ARM cpuinfo so QEMU_CPU decides
#      which kernels onnxruntime picks),
#   2. an arm64 Debian user space with python3.11, unpacked without running any arm64 code
#      (debootstrap --foreign, then the .debs unpacked by hand),
#   3. aarch64 wheels of onnxruntime (the host's version and the Android app's) and numpy, unzipped
#      into one folder per onnxruntime version.
# Everything lands in ${MBK_ARM_CACHE:-~/.cache/mobilebert_kit/arm64} with a stamp; re-running does nothing
# when the stamp matches. Needs root (or sudo) for apt only. Usage: make arm-emu
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CACHE=${MBK_ARM_CACHE:-${MBK_CACHE:-$HOME/.cache/mobilebert_kit}/arm64}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ROOT_PACKAGES=python3.11-minimal,libpython3.11-stdlib,libstdc++6,libgcc-s1
HOST_ORT=$("$PY" -c "import onnxruntime; print(onnxruntime.__version__)")
ANDROID_ORT=$("$PY" -c "from mobilebert_kit.runtimes import ANDROID_ORT_VERSION as v; print(v)")
NUMPY=$("$PY" -c "import numpy; print(numpy.__version__)")  # the host's numpy: same parsing of the npz files
# ARM_ORT_VERSIONS adds more onnxruntime versions (space-separated) to compare.
VERSIONS=$(printf '%s\n' "$HOST_ORT" "$ANDROID_ORT" ${ARM_ORT_VERSIONS:-} | sort -uV | paste -sd' ')
STAMP_TEXT="suite=$SUITE packages=$ROOT_PACKAGES numpy=$NUMPY onnxruntime=$VERSIONS"

if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$STAMP_TEXT" ] && command -v qemu-aarch64 >/dev/null; then
  exit 0
fi
quiet() {  # run "$@" silently; show its output only if it fails
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
APT=($SUDO apt-get -qq -o DPkg::Lock::Timeout=300)

install_qemu() {
  if qemu-aarch64 --version 2>/dev/null | grep -Eq 'version ([89]|[1-9][0-9])\.'; then return; fi
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb $MIRROR bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  quiet "${APT[@]}" update
  quiet env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -t bookworm-backports qemu-user
}

build_root() {
  local root="$CACHE/root" tmp="$CACHE/root.tmp"
  if [ -x "$root/usr/bin/python3.11" ]; then return; fi
  command -v debootstrap >/dev/null || quiet env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y debootstrap
  rm -rf "$tmp"
  quiet $SUDO debootstrap --arch=arm64 --foreign --variant=minbase --include="$ROOT_PACKAGES" \
    "$SUITE" "$tmp" "$MIRROR"
  # The first stage unpacks only the essential set; the rest waits for an arm64 second stage. Unpack
  # every downloaded .deb instead (dpkg -x would replace the /lib -> usr/lib symlink with a folder).
  for deb in "$tmp"/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$tmp"
  done
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  mv "$tmp" "$root"
}

fetch_wheels() {
  local version=$1 dest="$CACHE/wheels/onnxruntime-$1" tmp
  if [ -f "$dest/.complete" ]; then return; fi
  tmp=$(mktemp -d "$CACHE/wheels.XXXXXX")
  # Only onnxruntime's runtime core and numpy are imported by the worker: no dependency resolution.
  quiet "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
    -d "$tmp/dl" "onnxruntime==$version" "numpy==$NUMPY"
  mkdir -p "$tmp/site"
  for whl in "$tmp"/dl/*.whl; do "$PY" -m zipfile -e "$whl" "$tmp/site"; done
  touch "$tmp/site/.complete"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/site" "$dest"
  rm -rf "$tmp"
}

mkdir -p "$CACHE"
install_qemu
build_root
for v in $VERSIONS; do fetch_wheels "$v"; done
for v in $VERSIONS; do
  QEMU_CPU=cortex-a53 PYTHONPATH="$CACHE/wheels/onnxruntime-$v" qemu-aarch64 -L "$CACHE/root" \
    "$CACHE/root/usr/bin/python3.11" -c "import onnxruntime, numpy; assert onnxruntime.__version__ == '$v'"
done
echo "$STAMP_TEXT" >"$CACHE/stamp"
echo "ARM64 emulation ready in $CACHE (onnxruntime $VERSIONS; $(qemu-aarch64 --version | head -1))"
