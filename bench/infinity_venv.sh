#!/usr/bin/env bash
# Create the separate venv in which bench/vs_infinity.py runs the peer server infinity-emb.
# torch is pinned to the CPU build (2.13.0) IN THE SAME RESOLVE as infinity-emb[all]: an unpinned torch
# would pull a multi-GB CUDA build. Nothing here downloads model weights: the benchmark points infinity
# at the local all-MiniLM-L6-v2 folder, offline, on loopback.
#
#   bash bench/infinity_venv.sh            # -> $INFINITY_VENV (default /tmp/neuralpipe-infinity-venv)
set -euo pipefail
VENV="${INFINITY_VENV:-/tmp/neuralpipe-infinity-venv}"
INFINITY_VERSION="${INFINITY_VERSION:-0.0.78}"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x "$VENV/bin/infinity_emb" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "infinity-emb[all]==${INFINITY_VERSION}" "torch==2.13.0"
fi
# [all] brings torchvision (for infinity's vision models). PyPI's torchvision cannot load beside this machine's
# torch 2.13.0 CPU build ("operator torchvision::nms does not exist"), and transformers then fails to import at all.
# Text embedding never needs it: remove it so transformers skips its vision paths.
if "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then :; else
  "$VENV/bin/pip" uninstall --quiet -y torchvision || true
fi
"$VENV/bin/python" -c "import infinity_emb, torch; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__)"
echo "$VENV"
