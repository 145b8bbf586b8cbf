#!/usr/bin/env bash
# Installs wmtool and everything it needs into .venv, from nothing. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Headless MuJoCo rendering uses EGL through Mesa (MUJOCO_GL=egl, the default here).
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
  else
    echo "warning: libEGL not found; install Debian's libegl1 libegl-mesa0 libgl1-mesa-dri" \
         "for dm_control pixels" >&2
  fi
fi

# torch.compile on CPU (train.compile=on, and its tests) builds its kernels with a C++ compiler.
if ! command -v g++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
  else
    echo "warning: no g++; train.compile=on needs one on CPU (Debian: apt-get install g++)" >&2
  fi
fi

# `wmtool play`'s browser test drives Debian's Chromium (Playwright launches /usr/bin/chromium;
# it never downloads a browser).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: no chromium; the play page's browser test needs Debian's chromium" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The pinned CPU build of torch first, so nothing later pulls a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev]"
touch .venv/.installed
