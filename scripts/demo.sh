#!/usr/bin/env bash
# `make demo`: start the platform like `make run`, enqueue a few sample jobs over HTTP
# with the service token, and print how their status evolves.
# The services keep running afterwards (Ctrl-C stops them); DEMO_EXIT=1 stops them
# as soon as the jobs have been shown. Same env as scripts/run.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export ROUNDHOUSE_SERVICE_TOKEN="${ROUNDHOUSE_SERVICE_TOKEN:-dev-service-token}"
export RUN_LOG_DIR="${RUN_LOG_DIR:-$ROOT/target/run-logs}"
API="http://localhost:${API_PORT:-8080}"
TOKEN="$ROUNDHOUSE_SERVICE_TOKEN"

json() { # json <jq-filter> : read JSON on stdin, print the value (empty when absent)
  if command -v jq >/dev/null 2>&1; then
    jq -r "$1 // empty" 2>/dev/null || true
  else
    python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].lstrip(".").split("."):
    v=v.get(k) if isinstance(v,dict) else None
print("" if v is None else v)' "$1" 2>/dev/null || true
  fi
}

stop_services() {
  trap - EXIT INT TERM
  [ -f "$RUN_LOG_DIR/pids" ] || return 0
  echo "==> stopping services" >&2
  local pid _
  while read -r pid _; do kill -TERM "$pid" 2>/dev/null || true; done <"$RUN_LOG_DIR/pids"
  for _ in $(seq 1 30); do
    local alive=0
    while read -r pid _; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$RUN_LOG_DIR/pids"
    [ "$alive" = 0 ] && break
    sleep 1
  done
  while read -r pid _; do kill -KILL "$pid" 2>/dev/null || true; done <"$RUN_LOG_DIR/pids"
}

RUN_DETACH=1 scripts/run.sh
trap stop_services EXIT
trap 'stop_services; exit 130' INT
trap 'stop_services; exit 143' TERM

post() { # path body
  curl -sS -X POST "$API$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "$2" -w '\n%{http_code}'
}

ids=(); kinds=()
enqueue() { # label body
  local out code body id
  out="$(post /api/jobs/enqueue "$2")" || { echo "  $1: request failed" >&2; return 0; }
  code="${out##*$'\n'}"; body="${out%$'\n'*}"
  id="$(printf '%s' "$body" | json .jobId)"
  printf '  %-32s HTTP %s  %s\n' "$1" "$code" "${id:-$body}"
  if [ -n "$id" ]; then ids+=("$id"); kinds+=("$1"); fi
}

echo
echo "==> enqueueing sample jobs at $API"
enqueue "noop #1"                 '{"jobType":"noop","payload":{"n":1}}'
enqueue "noop #2 (priority 10)"   '{"jobType":"noop","payload":{"n":2},"priority":10}'
enqueue "noop #3 (delayed 3 s)"   '{"jobType":"noop","payload":{"n":3},"delaySeconds":3}'
key="demo-$(date +%s)"
enqueue "noop (idempotencyKey)"   "{\"jobType\":\"noop\",\"payload\":{},\"idempotencyKey\":\"$key\"}"
enqueue "noop (same key again)"   "{\"jobType\":\"noop\",\"payload\":{},\"idempotencyKey\":\"$key\"}"
enqueue "sleep 2 s (progress)"    '{"jobType":"sleep","payload":{"ms":2000}}'
enqueue "fail once, then succeed" '{"jobType":"fail","payload":{"times":1},"maxRetries":2}'
enqueue "llm_processing (dev)"    '{"jobType":"llm_processing","payload":{"provider":"dev","prompt":"Summarise the demo"}}'

schedule_id=""
out="$(post /api/schedules "{\"name\":\"demo-every-2s-$(date +%s)\",\"cron\":\"*/2 * * * * *\",\"jobType\":\"noop\"}")" || out=$'\n000'
schedule_id="$(printf '%s' "${out%$'\n'*}" | json .id)"
echo "  schedule every 2 s               HTTP ${out##*$'\n'}  ${schedule_id:-${out%$'\n'*}}"

out="$(post /api/jobs/batch '{"jobs":[{"jobType":"noop","payload":{"batch":1}},{"jobType":"noop","payload":{"batch":2}}]}')" || out=$'\n000'
echo "  batch of 2 noop                  HTTP ${out##*$'\n'}  ${out%$'\n'*}"

if [ "${#ids[@]}" -eq 0 ]; then
  echo "demo: no job was accepted; see $RUN_LOG_DIR/api.log" >&2
  exit 1
fi

echo
echo "==> job status (polling up to ${DEMO_WAIT_SECONDS:-20} s)"
deadline=$((SECONDS + ${DEMO_WAIT_SECONDS:-20}))
while :; do
  pending=0; lines=()
  for i in "${!ids[@]}"; do
    body="$(curl -sS -H "Authorization: Bearer $TOKEN" "$API/api/jobs/${ids[$i]}" 2>/dev/null || true)"
    st="$(printf '%s' "$body" | json .status)"
    case "$st" in completed|failed|cancelled) ;; *) pending=$((pending + 1)) ;; esac
    lines+=("$(printf '  %-32s %-38s %s' "${kinds[$i]}" "${ids[$i]}" "${st:-?}")")
  done
  if [ "$pending" = 0 ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
  sleep 1
done
printf '%s\n' "${lines[@]}"

if [ -n "$schedule_id" ]; then
  echo
  echo "==> the schedule, then deleting it"
  curl -sS -H "Authorization: Bearer $TOKEN" "$API/api/schedules/$schedule_id" | json .lastRunAt \
    | sed 's/^/  last tick fired: /'
  curl -sS -X DELETE -H "Authorization: Bearer $TOKEN" "$API/api/schedules/$schedule_id" >/dev/null || true
fi

EXECUTOR="http://localhost:${EXECUTOR_PORT:-8081}"
echo
echo "==> an agent run on the executor ($EXECUTOR, dev provider)"
curl -sS -X POST "$EXECUTOR/api/credits/grant" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"userId":"demo-user","amount":100}' >/dev/null || true
agent_id="$(curl -sS -X POST "$EXECUTOR/api/agents" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"name":"demo agent","userId":"demo-user","isHeavy":true}' | json .id)"
if [ -n "$agent_id" ]; then
  curl -sS -X POST "$EXECUTOR/api/agent/execute" -H "Authorization: Bearer $TOKEN" \
    -H "X-Backend-Secret: ${RAILWAY_BACKEND_SECRET:-dev-backend-secret}" -H 'Content-Type: application/json' \
    -d "{\"agentId\":\"$agent_id\",\"userId\":\"demo-user\",\"messages\":[{\"role\":\"user\",\"content\":\"Plan my week\"}]}" \
    | json .output | sed 's/^/  output: /'
else
  echo "  the executor did not answer; see $RUN_LOG_DIR/agent-executor.log" >&2
fi

echo
echo "==> queue stats"
curl -sS -H "Authorization: Bearer $TOKEN" "$API/api/queues/stats" || true
echo
echo

if [ "${DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
echo "Services keep running; Ctrl-C stops them."
while :; do
  while read -r pid name; do
    kill -0 "$pid" 2>/dev/null || { echo "demo: $name exited; see $RUN_LOG_DIR/$name.log" >&2; exit 1; }
  done <"$RUN_LOG_DIR/pids"
  sleep 2
done
