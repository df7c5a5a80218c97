#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ are reachable for local runs and tests.
#
# Idempotent: when both answer, this is a quick no-op.
#   1. If a service is down and we are root on a machine with the local packages,
#      start it with the commands from /work/shared/services.md.
#   2. Otherwise, if a Docker daemon is reachable, `docker compose up -d postgres rabbitmq`.
#   3. Otherwise fail with one clear line.
# Waits at most ENSURE_SERVICES_TIMEOUT seconds (default 60) for readiness.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TIMEOUT="${ENSURE_SERVICES_TIMEOUT:-60}"
PG_HOST="${PGHOST_CHECK:-127.0.0.1}"
PG_PORT="${PGPORT_CHECK:-5432}"
AMQP_HOST="${AMQP_HOST_CHECK:-127.0.0.1}"
AMQP_PORT="${AMQP_PORT_CHECK:-5672}"

log() { printf '[ensure-services] %s\n' "$*" >&2; }
die() { printf 'ensure-services: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

tcp_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1
}

pg_up() {
  if have pg_isready; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1
  else
    tcp_open "$PG_HOST" "$PG_PORT"
  fi
}

rabbit_up() {
  # The AMQP port must accept connections. When rabbitmq-diagnostics is installed
  # (and the local node is the one in use) also require the node to answer a ping.
  tcp_open "$AMQP_HOST" "$AMQP_PORT" || return 1
  if [ "${RABBIT_VIA_DOCKER:-0}" = 0 ] && have rabbitmq-diagnostics && [ "$(id -u)" = 0 ]; then
    timeout 15 rabbitmq-diagnostics -q ping >/dev/null 2>&1 || return 1
  fi
  return 0
}

wait_for() { # name check-fn
  local name="$1" fn="$2" deadline=$((SECONDS + TIMEOUT))
  until "$fn"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$name is not ready after ${TIMEOUT}s"
    fi
    sleep 1
  done
  log "$name is ready"
}

pg_ok=0; rabbit_ok=0
pg_up && pg_ok=1
rabbit_up && rabbit_ok=1
if [ "$pg_ok" = 1 ] && [ "$rabbit_ok" = 1 ]; then
  exit 0
fi

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
# ENSURE_SERVICES_NO_LOCAL=1 skips the local packages (e.g. to force Docker).
[ "${ENSURE_SERVICES_NO_LOCAL:-0}" = 1 ] && is_root=0

local_pg_available() {
  [ "$is_root" = 1 ] && have pg_ctlcluster && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]
}
local_rabbit_available() {
  [ "$is_root" = 1 ] && have rabbitmq-server && have rabbitmqctl
}

start_local_pg() {
  local ver
  for ver in $(ls /etc/postgresql); do
    log "starting PostgreSQL $ver (pg_ctlcluster)"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>&1 | sed 's/^/[ensure-services]   /' >&2 || true
  done
}

start_local_rabbit() {
  # Only launch a node when none is running (a booting node just needs waiting for).
  if ! timeout 20 rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ (rabbitmq-server -detached)"
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  log "waiting for RabbitMQ (rabbitmqctl await_startup)"
  timeout "$TIMEOUT" rabbitmqctl await_startup >/dev/null 2>&1 || true
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$ROOT/docker-compose.yml" "$@"
  elif have docker-compose; then
    docker-compose -f "$ROOT/docker-compose.yml" "$@"
  else
    return 127
  fi
}

docker_usable() {
  have docker && docker info >/dev/null 2>&1 && compose version >/dev/null 2>&1
}

need_docker=()
if [ "$pg_ok" = 0 ]; then
  if local_pg_available; then start_local_pg; else need_docker+=(postgres); fi
fi
if [ "$rabbit_ok" = 0 ]; then
  if local_rabbit_available; then start_local_rabbit; else need_docker+=(rabbitmq); fi
fi

if [ "${#need_docker[@]}" -gt 0 ]; then
  if docker_usable; then
    log "starting ${need_docker[*]} with docker compose"
    case " ${need_docker[*]} " in *" rabbitmq "*) RABBIT_VIA_DOCKER=1 ;; esac
    compose up -d "${need_docker[@]}" >&2
  else
    die "${need_docker[*]} not reachable (PostgreSQL ${PG_HOST}:${PG_PORT}, RabbitMQ ${AMQP_HOST}:${AMQP_PORT}); no local packages to start as root and no working Docker (docker info / docker compose) — start them yourself"
  fi
fi

[ "$pg_ok" = 1 ] || wait_for "PostgreSQL" pg_up
[ "$rabbit_ok" = 1 ] || wait_for "RabbitMQ" rabbit_up
