#!/usr/bin/env bash
# Create the database named in DATABASE_URL if it does not exist yet.
# DATABASE_URL defaults to postgres://postgres@localhost:5432/roundhouse.
set -euo pipefail

url="${1:-${DATABASE_URL:-postgres://postgres@localhost:5432/roundhouse}}"
base="${url%%\?*}"                       # drop ?sslmode=... etc.
query=""; [ "$base" != "$url" ] && query="?${url#*\?}"
db="${base##*/}"
server="${base%/*}"
if [ -z "$db" ] || [ "$server" = "$base" ] || [[ "$server" != *"://"* ]]; then
  echo "ensure-database: cannot find a database name in DATABASE_URL" >&2; exit 1
fi
db="$(printf '%b' "${db//%/\\x}")"       # percent-decode
admin_url="${server}/postgres${query}"

command -v psql >/dev/null 2>&1 || { echo "ensure-database: psql not found; create database \"$db\" yourself" >&2; exit 1; }

exists="$(psql -X -q -At -d "$admin_url" -v name="$db" <<'SQL'
select 1 from pg_database where datname = :'name';
SQL
)" || { echo "ensure-database: cannot connect to ${server#*@} to check database \"$db\"" >&2; exit 1; }

if [ "$exists" = 1 ]; then
  exit 0
fi
psql -X -q -d "$admin_url" -v ON_ERROR_STOP=1 -v name="$db" <<'SQL'
select format('CREATE DATABASE %I', :'name') \gexec
SQL
echo "[ensure-database] created database \"$db\"" >&2
