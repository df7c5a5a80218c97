#!/usr/bin/env bash
# `make run`: start the whole platform locally against local PostgreSQL and RabbitMQ.
#   ensure services → create database → cargo build --bins → roundhouse-api migrate →
#   start api, agent-executor, worker, scheduler in the background → print URLs → wait.
# Ctrl-C (or SIGTERM) stops all four. If one of them exits, the others are stopped too.
#
# Env (all optional): API_PORT (8080) AGENT_EXECUTOR_PORT (8081) WORKER_PORT (8082)
#   SCHEDULER_PORT (8083) DATABASE_URL RABBITMQ_URL LOG_FORMAT (pretty) RUST_LOG (info)
#   ROUNDHOUSE_SERVICE_TOKEN (dev-service-token) RAILWAY_BACKEND_SECRET (dev-backend-secret)
#   NO_BUILD=1 (skip cargo build) RUN_LOG_DIR (target/run-logs)
#   RUN_DETACH=1 (start, wait for health, print, and return while the services keep
#   running; their PIDs are in $RUN_LOG_DIR/pids — used by scripts/demo.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@localhost:5432/roundhouse}"
export RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/%2f}"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
export RUST_LOG="${RUST_LOG:-info}"
export ROUNDHOUSE_SERVICE_TOKEN="${ROUNDHOUSE_SERVICE_TOKEN:-dev-service-token}"
export RAILWAY_BACKEND_SECRET="${RAILWAY_BACKEND_SECRET:-dev-backend-secret}"

API_PORT="${API_PORT:-8080}"
AGENT_EXECUTOR_PORT="${AGENT_EXECUTOR_PORT:-8081}"
WORKER_PORT="${WORKER_PORT:-8082}"
SCHEDULER_PORT="${SCHEDULER_PORT:-8083}"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
LOG_DIR="${RUN_LOG_DIR:-$ROOT/target/run-logs}"
DETACH="${RUN_DETACH:-0}"

if [ -t 2 ]; then say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }; else say() { printf '==> %s\n' "$*" >&2; }; fi
die() { printf 'run: %s\n' "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

say "checking PostgreSQL and RabbitMQ"
scripts/ensure-services.sh

say "ensuring the database exists"
scripts/ensure-database.sh

if [ "${NO_BUILD:-0}" != 1 ]; then
  say "cargo build --bins"
  cargo build --bins
fi
for b in roundhouse-api roundhouse-agent-executor roundhouse-worker roundhouse-scheduler; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing (did the build succeed?)"
done

say "applying migrations (roundhouse-api migrate)"
"$BIN_DIR/roundhouse-api" migrate

for p in "$API_PORT" "$AGENT_EXECUTOR_PORT" "$WORKER_PORT" "$SCHEDULER_PORT"; do
  port_busy "$p" && die "port $p is already in use (another 'make run'?); stop it or set API_PORT/AGENT_EXECUTOR_PORT/WORKER_PORT/SCHEDULER_PORT"
done

mkdir -p "$LOG_DIR"
: >"$LOG_DIR/pids"
names=(); pids=()

start() { # name port binary
  local name="$1" port="$2" bin="$3"
  # Output goes to the terminal prefixed with the service name, and to $LOG_DIR/<name>.log.
  if [ "$DETACH" = 1 ]; then
    PORT="$port" OTEL_SERVICE_NAME="$name" nohup "$BIN_DIR/$bin" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  else
    PORT="$port" OTEL_SERVICE_NAME="$name" "$BIN_DIR/$bin" \
      > >(trap '' INT; tee "$LOG_DIR/$name.log" | sed -u "s/^/[$name] /") 2>&1 </dev/null &
  fi
  names+=("$name"); pids+=("$!")
  echo "$! $name" >>"$LOG_DIR/pids"
}

stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return; stopping=1
  trap - INT TERM
  say "stopping services"
  local i
  for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  # Give them their drain time, then force.
  for _ in $(seq 1 "${RUN_STOP_TIMEOUT:-30}"); do
    local alive=0
    for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run: ${names[$i]} did not stop in time; killing it" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
}

if [ "$DETACH" != 1 ]; then
  trap 'stop_all; exit 130' INT
  trap 'stop_all; exit 143' TERM
  trap 'stop_all' EXIT
fi

say "starting services (logs in ${LOG_DIR#"$ROOT"/})"
start api            "$API_PORT"            roundhouse-api
start agent-executor "$AGENT_EXECUTOR_PORT" roundhouse-agent-executor
start worker         "$WORKER_PORT"         roundhouse-worker
start scheduler      "$SCHEDULER_PORT"      roundhouse-scheduler

# Wait (up to 60 s) until every /health answers 200, or a service dies.
health_ok() { curl -fs -o /dev/null --max-time 2 "http://localhost:$1/health"; }
deadline=$((SECONDS + ${RUN_HEALTH_TIMEOUT:-60}))
ports=("$API_PORT" "$AGENT_EXECUTOR_PORT" "$WORKER_PORT" "$SCHEDULER_PORT")
while :; do
  ready=0
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || { wait "${pids[$i]}" 2>/dev/null && rc=0 || rc=$?; die "${names[$i]} exited during start (status $rc); see $LOG_DIR/${names[$i]}.log"; }
    health_ok "${ports[$i]}" && ready=$((ready + 1))
  done
  [ "$ready" = "${#pids[@]}" ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "run: not every /health answered 200 after ${RUN_HEALTH_TIMEOUT:-60}s; continuing (check the logs)" >&2
    break
  fi
  sleep 1
done

api="http://localhost:${API_PORT}"
cat >&2 <<MSG

  Roundhouse is running
  ─────────────────────
  API             ${api}
  Agent executor  http://localhost:${AGENT_EXECUTOR_PORT}
  Dashboard       ${api}/admin/queues  (sign in with the service token${DASHBOARD_PASSWORD:+ or DASHBOARD_PASSWORD})
  API docs        ${api}/api/docs
                  http://localhost:${AGENT_EXECUTOR_PORT}/api/docs  (agent executor)
  Health          ${api}/health
                  http://localhost:${AGENT_EXECUTOR_PORT}/health
                  http://localhost:${WORKER_PORT}/health  (worker)
                  http://localhost:${SCHEDULER_PORT}/health  (scheduler)
  Metrics         /metrics on each of the ports above
  Service token   ${ROUNDHOUSE_SERVICE_TOKEN}

  Enqueue a job:
    curl -sS -X POST ${api}/api/jobs/enqueue \\
      -H 'Authorization: Bearer ${ROUNDHOUSE_SERVICE_TOKEN}' \\
      -H 'Content-Type: application/json' \\
      -d '{"jobType":"noop","payload":{}}'
  Then: curl -sS -H 'Authorization: Bearer ${ROUNDHOUSE_SERVICE_TOKEN}' ${api}/api/jobs/<jobId>

MSG

if [ "$DETACH" = 1 ]; then
  echo "  PIDs: $(tr '\n' ' ' <"$LOG_DIR/pids")" >&2
  exit 0
fi
echo "  Ctrl-C stops everything." >&2

# Keep running until Ctrl-C or until one service exits.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      wait "${pids[$i]}" 2>/dev/null && rc=0 || rc=$?
      echo "run: ${names[$i]} exited (status $rc); stopping the others" >&2
      stop_all
      exit 1
    fi
  done
  sleep 1
done
