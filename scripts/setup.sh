#!/usr/bin/env bash
# Installs everything sle needs on a fresh Debian 12 machine with Python 3.10+ (run as root, or with sudo).
# Idempotent: a second run only checks. Used by the README's commands and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# MBROLA voices live in Debian's contrib/non-free components.
if [ -f /etc/apt/sources.list.d/debian.sources ] && ! grep -q "non-free" /etc/apt/sources.list.d/debian.sources; then
  $SUDO sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources
fi

APT_PACKAGES=(espeak-ng mbrola mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6 mbrola-de7 mbrola-de8
  mbrola-nl1 mbrola-nl2 mbrola-nl3 mbrola-sw1 mbrola-sw2 mbrola-fr1 mbrola-fr4 ffmpeg sox chromium chromium-driver)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# The CPU wheel of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
$PY -c "import torch" 2>/dev/null || $PY -m pip install -q torch==2.13.0
$PY -m pip install -q -r requirements.txt -r requirements-dev.txt
$PY -m pip install -q --no-deps -e .

# NeMo (Parakeet) pins clash with this environment, so it lives in a side venv that reuses the system packages;
# tests run the NeMo backend there. Opt-in: ~80 packages, 1-3 minutes.
if [ "${SLE_NEMO:-0}" = "1" ] && ! var/nemo-venv/bin/python -c "import nemo.collections.asr" >/dev/null 2>&1; then
  echo "setup: NeMo into var/nemo-venv"
  $PY -m venv --system-site-packages var/nemo-venv
  var/nemo-venv/bin/pip install -q "nemo_toolkit[asr]==3.0.0"
fi
echo "setup: done"
