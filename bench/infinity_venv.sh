#!/usr/bin/env bash
# Create the separate venv in which bench/vs_infinity.py runs the peer server infinity-emb.
# torch is pinned to the CPU build (2.13.0) IN THE SAME RESOLVE as infinity-emb: an unpinned torch would pull a
# multi-GB CUDA build. Nothing here downloads model weights: the benchmark points infinity at the local
# all-MiniLM-L6-v2 folder, offline, on loopback.
#
# The resolve is done by uv (from PyPI, into a tool venv of its own): pip's backtracking over infinity-emb's
# extras ran for more than 24 minutes here without finishing; uv resolves and installs in ~20 s. Only the extras
# the benchmark uses are installed: `server` (the `infinity_emb v2` CLI) and `torch` (its torch engine, through
# sentence-transformers). `[all]` would add torchvision, whose PyPI build cannot load beside the CPU torch.
#
#   bash bench/infinity_venv.sh            # -> $INFINITY_VENV (default /tmp/neuralpipe-infinity-venv)
set -euo pipefail
VENV="${INFINITY_VENV:-/tmp/neuralpipe-infinity-venv}"
INFINITY_VERSION="${INFINITY_VERSION:-0.0.78}"
UV_VERSION="${UV_VERSION:-0.5.0}"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x "$VENV/bin/infinity_emb" ]; then
  UV_VENV="$VENV-uv"
  if [ ! -x "$UV_VENV/bin/uv" ]; then
    "$PY" -m venv "$UV_VENV"
    "$UV_VENV/bin/pip" install --quiet "uv==${UV_VERSION}"
  fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # pip's own settings (extra indexes, find-links such as a local torch CPU wheel) are passed on to uv.
  UV_ARGS=()
  for link in ${PIP_FIND_LINKS:-}; do UV_ARGS+=(--find-links "$link"); done
  for url in ${PIP_EXTRA_INDEX_URL:-} $("$VENV/bin/python" -m pip config get global.extra-index-url 2>/dev/null || true); do
    UV_ARGS+=(--extra-index-url "$url")
  done
  "$UV_VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --index-strategy unsafe-best-match \
    "${UV_ARGS[@]}" "infinity-emb[server,torch]==${INFINITY_VERSION}" "torch==2.13.0"
fi
"$VENV/bin/python" -c "import infinity_emb, torch; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__)"
echo "$VENV"
