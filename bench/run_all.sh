#!/usr/bin/env bash
# Run the quality evaluation and every speed benchmark, one at a time, logging each to $OUT.
# Figures go into bench/RESULTS.md by hand, with the command, machine and date each log starts with.
#
#   bash bench/run_all.sh                 # everything (about 30 minutes on 2 cores)
#   bash bench/run_all.sh eval            # only the SciFact evaluation (reference, HNSW, exact)
#   bash bench/run_all.sh speed           # only the speed benchmarks
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=${SCIFACT:-../shared/data/scifact}
CACHE=${NEURALPIPE_BENCH_CACHE:-/tmp/neuralpipe-bench}
OUT=${OUT:-$CACHE/results}
EVAL_DATA_DIR=${EVAL_DATA_DIR:-$CACHE/eval-data}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false NEURALPIPE_BENCH_CACHE=$CACHE
mkdir -p "$OUT"
what=${1:-all}

step() {  # step NAME COMMAND...
  local name=$1; shift
  echo "== $name: $*" | tee "$OUT/$name.log"
  date -u '+%Y-%m-%d %H:%M:%S UTC' | tee -a "$OUT/$name.log"
  /usr/bin/time -v "$@" >>"$OUT/$name.log" 2>"$OUT/$name.err"
  echo "exit $?" | tee -a "$OUT/$name.log"
  grep -v '^\s*$' "$OUT/$name.log" | tail -12
}

if [[ $what == all || $what == eval ]]; then
  step reference $PY bench/reference_dense.py "$DATA" --split train --json --save-vectors "$CACHE/vectors/scifact" --save-run "$OUT/reference-run.json"
  step eval-hnsw $PY -m neuralpipe.cli eval "$DATA" --split train --data-dir "$EVAL_DATA_DIR" --save-runs "$OUT/runs-hnsw"
  step eval-exact $PY -m neuralpipe.cli eval "$DATA" --split train --exact --data-dir "$EVAL_DATA_DIR" --save-runs "$OUT/runs-exact"
  for mode in exact hnsw; do
    $PY bench/compare_runs.py "$DATA" --split train "$OUT/runs-$mode/dense.json" "$OUT/reference-run.json" | tee "$OUT/compare-$mode.json"
  done
fi
if [[ $what == all || $what == speed ]]; then
  step mlnode_throughput $PY bench/mlnode_throughput.py --texts 192 --rounds 3
  step mlnode_batching $PY bench/mlnode_batching.py --requests 256 --concurrency 64 --rounds 3
  step vs_infinity bash -c "bash bench/infinity_venv.sh >/dev/null && $PY bench/vs_infinity.py --passages 256 --queries 256 --rounds 2"
  step ingest_throughput $PY bench/ingest_throughput.py --docs 256 --rounds 2
  step neural_latency $PY bench/neural_latency.py --queries 200 --vectors "$CACHE/vectors/scifact"
  step datanode_search $PY bench/datanode_search.py --vectors "$CACHE/vectors/scifact" --eval-data-dir "$EVAL_DATA_DIR" --rounds 2 --concurrency 1,8
  step mlnode_memory $PY bench/mlnode_memory.py --texts 64
fi
