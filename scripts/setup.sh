#!/usr/bin/env bash
# Idempotent set-up: creates .venv when missing, installs torch 2.13.0 first when no
# torch is present (a GPU user installs their CUDA build into .venv beforehand and it
# is kept), then installs t2r in editable mode with its extras. Re-running is cheap:
# the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
EXTRAS=${T2R_EXTRAS:-dev,onnx,sim,robomimic,distributed,lerobot}

# MuJoCo renders offscreen on the CPU through EGL (or OSMesa): install the system
# libraries when they are missing and we may (root, apt available).
if [[ ",$EXTRAS," == *",sim,"* ]] && ! ldconfig -p | grep -q 'libEGL.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing EGL/OSMesa libraries for headless rendering"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri libosmesa6 >/dev/null
  else
    echo "[setup] warning: no libEGL found; install libegl1 and libgl1-mesa-dri (or libosmesa6) to render pose_env" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==2.13.0"
  "$PY" -m pip install --quiet "torch==2.13.0"
fi

stamp="$VENV/.t2r-installed-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)-$EXTRAS"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing t2r[$EXTRAS]"
  "$PY" -m pip install --quiet -e ".[$EXTRAS]"
  rm -f "$VENV"/.t2r-installed-*
  touch "$stamp"
fi
