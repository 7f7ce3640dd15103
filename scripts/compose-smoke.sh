#!/usr/bin/env bash
# The docker-compose stack end to end: validate docker-compose.yml, bring it up and wait until every service is
# healthy, register the models on the ML node by their catalog names, ingest a small corpus through
# pipelines/ingest/dense-sparse.yaml into the real OpenSearch, print the rankings of a neural, a neural_sparse and
# a hybrid query, and tear everything down (containers and volumes), also when a step fails.
#
#   export OPENSEARCH_INITIAL_ADMIN_PASSWORD='Choose-A-Strong-Passw0rd!'
#   scripts/compose-smoke.sh              # needs a Docker engine, `docker compose` (or COMPOSE=docker-compose),
#                                         # curl, python3 and the neuralpipe CLI on this machine
#   scripts/compose-smoke.sh --dry-run    # validates docker-compose.yml, prints every other command, runs none
#   scripts/compose-smoke.sh --keep       # leave the stack running afterwards
#
# Environment: COMPOSE (default "docker compose"), NEURALPIPE (default "neuralpipe"), OPENSEARCH_URL
# (https://localhost:9200), ML_URL (https://localhost:9300: TLS with certs/ml-node.pem, the OpenSearch users),
# INDEX (compose-smoke), SMOKE_DIR (corpus and ingest state; default a temporary folder, removed at the end).
# certs/ is made by scripts/make-certs.sh when missing.
# Written where no Docker engine runs: only --dry-run has been run (tests/conformance/test_compose_smoke.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE="${COMPOSE:-docker compose}"
NEURALPIPE="${NEURALPIPE:-neuralpipe}"
OPENSEARCH_URL="${OPENSEARCH_URL:-https://localhost:9200}"
ML_URL="${ML_URL:-https://localhost:9300}"
INDEX="${INDEX:-compose-smoke}"
PIPELINE="pipelines/ingest/dense-sparse.yaml"
# name|version|format of the models the pipeline names, registered by their catalog names (configs/catalog.yaml)
MODELS=(
  "huggingface/sentence-transformers/all-MiniLM-L6-v2|1.0.1|TORCH_SCRIPT"
  "neuralpipe/splade-tiny|1.0.0|TORCH_SCRIPT"
)
DRY_RUN=0
KEEP=0

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compose-smoke: unknown argument [$1]" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ -z "${OPENSEARCH_INITIAL_ADMIN_PASSWORD:-}" ]; then
  echo "compose-smoke: set OPENSEARCH_INITIAL_ADMIN_PASSWORD (8+ characters with upper, lower, digit and special)" >&2
  exit 2
fi
export OPENSEARCH_PASSWORD="$OPENSEARCH_INITIAL_ADMIN_PASSWORD"  # read by neuralpipe instead of --password
read -r -a COMPOSE_CMD <<< "$COMPOSE"
COMPOSE_CMD+=(-f "$ROOT/docker-compose.yml")
CONNECT=(--opensearch "$OPENSEARCH_URL" --user admin --no-verify-certs --ml-url "$ML_URL")
# the ML node: its own CA (scripts/make-certs.sh), the same admin user as OpenSearch
ML_CURL=(--cacert "$ROOT/certs/root-ca.pem" -u "admin:$OPENSEARCH_INITIAL_ADMIN_PASSWORD")

say() { printf '\n== %s\n' "$*"; }

# Print a command as a shell would read it back (the password masked), then run it unless --dry-run.
show() {
  local shown
  shown="$(printf '%q ' "${@//"$OPENSEARCH_INITIAL_ADMIN_PASSWORD"/@PASSWORD@}")"
  shown="${shown% }"
  printf '+ %s\n' "${shown//@PASSWORD@/***}"
}
run() {
  show "$@"
  if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

json_field() {  # json_field FIELD: read a JSON object on stdin, print one top-level field
  python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"
}

teardown() {
  if [ -n "$OWN_SMOKE_DIR" ]; then rm -rf "$OWN_SMOKE_DIR"; fi
  if [ "$KEEP" -eq 1 ]; then
    say "--keep: the stack stays up (${COMPOSE} down -v to remove it)"
  else
    say "tear down"
    run "${COMPOSE_CMD[@]}" down -v --remove-orphans
  fi
}

OWN_SMOKE_DIR=""
if [ -z "${SMOKE_DIR:-}" ]; then
  SMOKE_DIR="$(mktemp -d -t compose-smoke-XXXXXX)"
  OWN_SMOKE_DIR="$SMOKE_DIR"
fi
CORPUS="$SMOKE_DIR/corpus.jsonl"

say "validate docker-compose.yml"
# `config` needs no engine: it runs for real in --dry-run too
show "${COMPOSE_CMD[@]}" config --quiet
"${COMPOSE_CMD[@]}" config --quiet

say "up, and wait until every healthcheck passes"
if [ "$DRY_RUN" -eq 0 ]; then "$ROOT/scripts/make-certs.sh"; else echo "# scripts/make-certs.sh if certs/ is empty"; fi
trap teardown EXIT
run "${COMPOSE_CMD[@]}" up -d --build --wait --wait-timeout 900
run curl -sk -u "admin:$OPENSEARCH_INITIAL_ADMIN_PASSWORD" "$OPENSEARCH_URL/_cluster/health?wait_for_status=yellow"
run curl -sf "${ML_CURL[@]}" "$ML_URL/"

say "register and deploy the models on the ML node"
register() {  # register NAME VERSION FORMAT: POST _register?deploy=true, then poll the task until it finishes
  local body task_id state="" task=""
  body="{\"name\": \"$1\", \"version\": \"$2\", \"model_format\": \"$3\"}"
  show curl -sf "${ML_CURL[@]}" -XPOST "$ML_URL/_plugins/_ml/models/_register?deploy=true" \
    -H 'content-type: application/json' \
    -d "$body"
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "# then poll $ML_URL/_plugins/_ml/tasks/<task_id> until it is no longer CREATED or RUNNING"
    return
  fi
  task_id="$(curl -sf "${ML_CURL[@]}" -XPOST "$ML_URL/_plugins/_ml/models/_register?deploy=true" \
    -H 'content-type: application/json' \
    -d "$body" | json_field task_id)"
  for _ in $(seq 1 300); do
    task="$(curl -sf "${ML_CURL[@]}" "$ML_URL/_plugins/_ml/tasks/$task_id")"
    state="$(json_field state <<< "$task")"
    case "$state" in CREATED|RUNNING) sleep 2 ;; *) break ;; esac
  done
  echo "  $1: $state (model $(json_field model_id <<< "$task"))"
  if [ "$state" != "COMPLETED" ]; then
    echo "compose-smoke: registering $1 failed: $task" >&2
    return 1
  fi
}
for model in "${MODELS[@]}"; do
  IFS='|' read -r name version format <<< "$model"
  register "$name" "$version" "$format"
done

say "ingest a small corpus through $PIPELINE"
cat > "$CORPUS" <<'EOF'
{"_id": "cat", "text": "Cats are small pets that purr when they are content and sleep most of the day."}
{"_id": "dog", "text": "Dogs are loyal pets that bark at strangers and love long walks in the park."}
{"_id": "pasta", "text": "Boil the pasta in salted water for ten minutes, then toss it with tomato sauce."}
{"_id": "bread", "text": "Knead the dough, let it rise for an hour, then bake the bread in a hot oven."}
{"_id": "python", "text": "Python is a programming language; its standard library parses JSON and CSV files."}
{"_id": "rust", "text": "Rust is a systems programming language that guarantees memory safety without a GC."}
{"_id": "volcano", "text": "A volcano erupts when molten rock, ash and gases escape from the magma chamber below."}
{"_id": "ocean", "text": "Ocean tides rise and fall twice a day, pulled by the gravity of the moon."}
EOF
cd "$ROOT"  # pipeline paths are relative to the checkout
run "$NEURALPIPE" ingest "$CORPUS" --index "$INDEX" --pipeline "$PIPELINE" "${CONNECT[@]}" \
  --state-dir "$SMOKE_DIR/state" --restart --no-progress

say "neural (dense k-NN)"
run "$NEURALPIPE" search --index "$INDEX" --neural "an animal that purrs" --size 3 "${CONNECT[@]}"
say "neural_sparse (SPLADE-tiny, the model recorded at ingest)"
run "$NEURALPIPE" search --index "$INDEX" --sparse "volcano magma eruption" --size 3 "${CONNECT[@]}"
say "hybrid (match + neural + neural_sparse, min_max + arithmetic_mean)"
run "$NEURALPIPE" search --index "$INDEX" --hybrid "programming language memory safety" --size 3 "${CONNECT[@]}"
