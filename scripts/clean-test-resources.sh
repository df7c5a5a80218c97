#!/usr/bin/env bash
# Remove what integration tests leave behind when they are killed:
#   - PostgreSQL databases named rh_test_<hex>   (DROP DATABASE ... WITH (FORCE))
#   - RabbitMQ queues and exchanges named rhtest_<hex>...  (default vhost)
#
# By default it spares resources that look in use, so a `make test` started while
# another test run is going on does not pull the rug from under it:
#   - a database with open connections that is younger than CLEAN_TEST_MAX_AGE_SECONDS (6 h),
#     or one created in the last CLEAN_TEST_MIN_AGE_SECONDS (60 s);
#   - every queue/exchange whose rhtest_<hex> group has a queue with consumers or
#     matches such a spared database's <hex>.
# `--all` (or CLEAN_TEST_ALL=1) removes everything matching, in use or not.
#
# Env: PGHOST (127.0.0.1) PGPORT (5432) PGUSER (postgres) RABBITMQ_VHOST (/)
#      TEST_DB_PREFIX (rh_test_) TEST_AMQP_PREFIX (rhtest_)
set -euo pipefail

ALL="${CLEAN_TEST_ALL:-0}"
for arg in "$@"; do
  case "$arg" in
    --all) ALL=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "clean-test-resources: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
VHOST="${RABBITMQ_VHOST:-/}"
DB_PREFIX="${TEST_DB_PREFIX:-rh_test_}"
AMQP_PREFIX="${TEST_AMQP_PREFIX:-rhtest_}"
MIN_AGE="${CLEAN_TEST_MIN_AGE_SECONDS:-60}"
MAX_AGE="${CLEAN_TEST_MAX_AGE_SECONDS:-21600}"

log() { printf '[clean-test] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
status=0

# ---------------------------------------------------------------- PostgreSQL
busy_tokens=()   # <hex> of databases spared because they are in use
if ! have psql; then
  log "psql not found; skipping PostgreSQL"
elif ! psql -X -q -At -d postgres -c 'select 1' >/dev/null 2>&1; then
  log "PostgreSQL at ${PGHOST}:${PGPORT} not reachable as ${PGUSER}; skipping databases"
  status=1
else
  # name | age in seconds (-1 when unknown) | open connections
  listing="$(psql -X -q -At -F'|' -d postgres -v prefix="$DB_PREFIX" <<'SQL'
select d.datname,
       coalesce(extract(epoch from now() - (pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification)::bigint, -1),
       (select count(*) from pg_stat_activity a where a.datid = d.oid and a.pid <> pg_backend_pid())
from pg_database d
where left(d.datname, length(:'prefix')) = :'prefix'
order by 1;
SQL
)" || { log "could not list databases"; listing=""; status=1; }

  to_drop=(); spared=0
  while IFS='|' read -r name age conns; do
    [ -n "$name" ] || continue
    if [ "$ALL" != 1 ]; then
      in_use=0
      if [ "$age" -ge 0 ] && [ "$age" -lt "$MIN_AGE" ]; then in_use=1; fi
      if [ "$conns" -gt 0 ] && { [ "$age" -lt 0 ] || [ "$age" -lt "$MAX_AGE" ]; }; then in_use=1; fi
      if [ "$in_use" = 1 ]; then
        spared=$((spared + 1))
        tok="${name#"$DB_PREFIX"}"; tok="${tok%%[!0-9a-f]*}"
        [ -n "$tok" ] && busy_tokens+=("$tok")
        continue
      fi
    fi
    to_drop+=("$name")
  done <<<"$listing"

  dropped=0
  if [ "${#to_drop[@]}" -gt 0 ]; then
    # One psql session; each DROP DATABASE runs in its own implicit transaction.
    sql=""
    for name in "${to_drop[@]}"; do
      sql+="DROP DATABASE IF EXISTS \"${name//\"/\"\"}\" WITH (FORCE);"$'\n'
    done
    if out="$(printf '%s' "$sql" | psql -X -q -d postgres 2>&1)"; then :; else status=1; fi
    errors="$(printf '%s\n' "$out" | grep -c 'ERROR' || true)"
    dropped=$(( ${#to_drop[@]} - errors ))
    [ "$errors" -gt 0 ] && { printf '%s\n' "$out" | grep ERROR | head -5 >&2; status=1; }
  fi
  log "PostgreSQL: dropped ${dropped} ${DB_PREFIX}* database(s), spared ${spared} in use"
fi

# ---------------------------------------------------------------- RabbitMQ
erl_bin() { # Erlang binary literal for an arbitrary string
  local s="$1" out="" i c
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"; out+="$(printf '%d,' "'$c")"
  done
  printf '<<%s>>' "${out%,}"
}

if ! have rabbitmqctl; then
  log "rabbitmqctl not found; skipping RabbitMQ"
  exit "$status"
fi
if ! timeout 20 rabbitmqctl -q list_vhosts >/dev/null 2>&1; then
  log "RabbitMQ node not reachable with rabbitmqctl; skipping queues/exchanges"
  exit 1
fi

busy_erl="["
for t in "${busy_tokens[@]+"${busy_tokens[@]}"}"; do busy_erl+="$(erl_bin "$t"),"; done
busy_erl="${busy_erl%,}]"

# One Erlang expression on the broker: fast even with hundreds of queues.
read -r -d '' ERL <<EOF_ERL || true
VHost = $(erl_bin "$VHOST"),
P = $(erl_bin "$AMQP_PREFIX"),
All = $( [ "$ALL" = 1 ] && echo true || echo false ),
PL = byte_size(P),
Match = fun(N) -> byte_size(N) >= PL andalso binary:part(N, 0, PL) =:= P end,
IsHex = fun(C) -> (C >= 48 andalso C =< 57) orelse (C >= 97 andalso C =< 102) end,
Tok = fun(N) -> Rest = binary:part(N, PL, byte_size(N) - PL),
                list_to_binary(lists:takewhile(IsHex, binary_to_list(Rest))) end,
Consumers = fun(Q) -> case catch rabbit_amqqueue:info(Q, [consumers]) of
                        [{consumers, C}] when is_integer(C) -> C; _ -> 0 end end,
Qs = [Q || Q <- rabbit_amqqueue:list(VHost), Match(element(4, amqqueue:get_name(Q)))],
Busy = case All of
         true -> [];
         false -> $busy_erl ++ [Tok(element(4, amqqueue:get_name(Q))) || Q <- Qs, Consumers(Q) > 0]
       end,
Free = fun(N) -> not lists:member(Tok(N), Busy) end,
DelQ = [Q || Q <- Qs, Free(element(4, amqqueue:get_name(Q)))],
QOk = length([ok || Q <- DelQ,
                    case catch rabbit_amqqueue:delete(Q, false, false, <<"clean-test-resources">>) of
                      {ok, _} -> true; _ -> false end]),
Xs = [element(2, X) || X <- rabbit_exchange:list(VHost), Match(element(4, element(2, X)))],
DelX = [XN || XN <- Xs, Free(element(4, XN))],
XOk = length([ok || XN <- DelX,
                    case catch rabbit_exchange:delete(XN, false, <<"clean-test-resources">>) of
                      ok -> true; {error, not_found} -> true; _ -> false end]),
{cleaned, QOk, length(DelQ), length(Qs) - length(DelQ), XOk, length(DelX), length(Xs) - length(DelX)}.
EOF_ERL

if res="$(timeout 300 rabbitmqctl -q eval "$ERL" 2>&1)" && [[ "$res" == "{cleaned,"* ]]; then
  IFS=',' read -r _ qok qtry qskip xok xtry xskip <<<"$(tr -d '{} \n' <<<"$res")"
  log "RabbitMQ: deleted ${qok}/${qtry} queue(s) and ${xok}/${xtry} exchange(s) named ${AMQP_PREFIX}*; spared ${qskip} queue(s), ${xskip} exchange(s) in use"
  if [ "$qok" != "$qtry" ] || [ "$xok" != "$xtry" ]; then status=1; fi
  exit "$status"
fi

# Fallback: one CLI call per queue (slower, works without the internal Erlang API).
log "rabbitmqctl eval failed (${res%%$'\n'*}); falling back to per-queue deletion"
mapfile -t lines < <(rabbitmqctl -q list_queues -p "$VHOST" name consumers 2>/dev/null | awk -v p="$AMQP_PREFIX" 'index($1, p) == 1')
declare -A busy=()
for t in "${busy_tokens[@]+"${busy_tokens[@]}"}"; do busy[$t]=1; done
tok_of() { local t="${1#"$AMQP_PREFIX"}"; printf '%s' "${t%%[!0-9a-f]*}"; }
if [ "$ALL" != 1 ]; then
  for l in "${lines[@]+"${lines[@]}"}"; do
    read -r n c <<<"$l"; [ "${c:-0}" -gt 0 ] && busy[$(tok_of "$n")]=1
  done
fi
queues=()
for l in "${lines[@]+"${lines[@]}"}"; do
  read -r n _ <<<"$l"; [ -n "${busy[$(tok_of "$n")]+x}" ] || queues+=("$n")
done
if [ "${#queues[@]}" -gt 0 ]; then
  printf '%s\0' "${queues[@]}" | xargs -0 -r -n 1 -P 8 rabbitmqctl -q delete_queue -p "$VHOST" >/dev/null || status=1
fi
exchanges=()
while read -r n; do
  [ -n "$n" ] && [ -z "${busy[$(tok_of "$n")]+x}" ] && exchanges+=("$n")
done < <(rabbitmqctl -q list_exchanges -p "$VHOST" name 2>/dev/null | awk -v p="$AMQP_PREFIX" 'index($1, p) == 1')
xdel=0
if [ "${#exchanges[@]}" -gt 0 ]; then
  if have rabbitmqadmin && rabbitmqadmin -q list vhosts >/dev/null 2>&1; then
    for n in "${exchanges[@]}"; do
      rabbitmqadmin -q -V "$VHOST" delete exchange name="$n" >/dev/null 2>&1 && xdel=$((xdel + 1)) || status=1
    done
  else
    log "cannot delete ${#exchanges[@]} exchange(s) without rabbitmqctl eval or the management API (rabbitmqadmin)"
    status=1
  fi
fi
log "RabbitMQ (fallback): deleted ${#queues[@]} queue(s), ${xdel}/${#exchanges[@]} exchange(s)"
exit "$status"
