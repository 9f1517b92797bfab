#!/usr/bin/env bash
# `make demo`: the pipeline end to end on generated data. Everything it writes is under $1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
out="${1:-demo-output}"
py=.venv/bin/python
USERS="${DEMO_USERS:-5000}"
DAYS="${DEMO_DAYS:-28}"

rm -rf "$out"
mkdir -p "$out/logs"
: > "$out/logs/stages.tsv"

# run_stage NAME CMD...: run a job, keep its log, note its seconds in logs/stages.tsv.
run_stage() {
  local name="$1"; shift
  echo "== $name: $*"
  local start=$SECONDS
  if ! "$@" > "$out/logs/$name.out" 2> "$out/logs/$name.err"; then
    tail -n 20 "$out/logs/$name.err" >&2
    echo "demo: stage '$name' failed; its logs are in $out/logs/" >&2
    exit 1
  fi
  printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$out/logs/stages.tsv"
  echo "   $(tail -n 1 "$out/logs/$name.out" | cut -c 1-200)"
}

run_stage generate_events $py jobs/generate_events.py --out "$out/raw" --users "$USERS" --days "$DAYS" \
  --seed 7 --duplicates 0.01 --out-of-order 0.01 --malformed 0.001 --workers 2

echo
echo "-- a few raw events ($(find "$out/raw" -name 'part-*' | wc -l) files):"
first_file="$(find "$out/raw" -name 'part-*.jsonl' | sort | head -n 1)"
head -n 6 "$first_file" | cut -c 1-220
echo

run_stage sessionize ./spark-submit.sh --driver-memory 3g jobs/sessionize.py --input "$out/raw" --lake "$out/lake"
run_stage build_features ./spark-submit.sh --driver-memory 3g jobs/build_features.py --lake "$out/lake" --run-id demo

# Train the offer model (the notebook, executed; it ends by printing metrics.json's path).
run_stage train_notebook $py -m papermill notebooks/02_train_offer_model.ipynb "$out/02_train_offer_model.ipynb" \
  --cwd . -p lake "$out/lake" -p run_id demo -p raw_dir "$out/raw" -p output_dir "$out/model"
$py - "$out/model/metrics.json" <<'PY' | tee -a "$out/logs/train_notebook.out"
import json, sys
m = json.load(open(sys.argv[1]))
v, p = m["validation"], m["policy"]
print(json.dumps({"validation_rmse": round(v["rmse"], 3), "baseline_rmse": round(v["baseline_rmse"], 3),
                  "policy_dr": round(p["dr"], 3), "logging_value": round(p["logging_value"], 3),
                  "true_value": p.get("true_value"), "true_logging_value": p.get("true_logging_value"),
                  "true_oracle_value": p.get("true_oracle_value")}))
PY

# The online store: a local DynamoDB (moto server) on 127.0.0.1, stopped again on the way out.
port="${DEMO_DYNAMODB_PORT:-5055}"
$py -m offer_ai.online.local_dynamodb start --port "$port" --state-dir "$out/dynamodb" > /dev/null
trap '$py -m offer_ai.online.local_dynamodb stop --port "$port" --state-dir "$out/dynamodb" > /dev/null || true' EXIT
run_stage export_features ./spark-submit.sh --driver-memory 3g jobs/export_features.py --lake "$out/lake" \
  --set "online_store.endpoint_url=http://127.0.0.1:$port" --set online_store.create_table=true

# Promote the notebook's model: only if it beats the no-skill RMSE and its policy's doubly-robust
# value is at least the logging policy's (on the export's validation rows).
store="online_store.endpoint_url=http://127.0.0.1:$port"
promote=($py jobs/promote_model.py --model "$out/model/model" --run-id demo --lake "$out/lake" --set "serving.models_root=$out/models")
if ! "${promote[@]}" --check-only > /dev/null 2> "$out/logs/promote_check.err"; then
  # A small demo (DEMO_USERS/DEMO_DAYS) has too few complete rows for the model to beat the logging
  # policy: say so, and promote it anyway so the rest of the demo has a model to serve.
  echo "   $(tail -n 1 "$out/logs/promote_check.err")"
  echo "   (a demo this small cannot pass the guard: promoting with --force)"
  promote+=(--force)
fi
run_stage promote_model "${promote[@]}"

# Serve: the decision service on loopback, asked over HTTP for the offer 5 exported players (and
# one the store has never seen: a cold start) see now; every decision is logged as an offer_shown
# event under $out/raw/date=…/decisions-*.jsonl. Stopped with SIGTERM, which writes the last ones.
sport="${DEMO_SERVE_PORT:-8089}"
echo "== serve: jobs/serve.py on 127.0.0.1:$sport"
serve_start=$SECONDS
$py jobs/serve.py --port "$sport" --set "$store" --set "serving.models_root=$out/models" --set "raw.root=$out/raw" \
  > "$out/logs/serve.out" 2> "$out/logs/serve.err" &
serve_pid=$!
trap 'kill -TERM $serve_pid 2>/dev/null || true; $py -m offer_ai.online.local_dynamodb stop --port "$port" --state-dir "$out/dynamodb" > /dev/null || true' EXIT
$py - "$sport" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("demo: the decision service did not become ready; see its log in logs/serve.err")
PY
run_stage decisions $py scripts/demo_decisions.py --url "http://127.0.0.1:$sport" --sample 5 --user new-player-0001 \
  --set "$store"
head -n -1 "$out/logs/decisions.out"
kill -TERM "$serve_pid" && wait "$serve_pid"
printf '%s\t%s\n' serve $((SECONDS - serve_start)) >> "$out/logs/stages.tsv"
echo "   $(tail -n 1 "$out/logs/serve.out" | cut -c 1-200)"
echo

run_stage show_tables ./spark-submit.sh jobs/show_tables.py --lake "$out/lake" --rows 3
sed -n '/^==/,$p' "$out/logs/show_tables.out" | head -n -1

echo
echo "== demo summary (logs in $out/logs/)"
$py scripts/demo_summary.py "$out"
