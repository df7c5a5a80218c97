#!/usr/bin/env bash
# The Celery comparison of `make bench`: runs the same no-op workload through
# Celery on the same RabbitMQ and PostgreSQL, and prints one JSON object on
# stdout (progress on stderr). Arguments go to bench/celery/run.py
# (--jobs, --clients, --batch-jobs, --batch-size, --batch-senders,
# --concurrency, --prefetch-multiplier).
#
# Makes (once) a venv in $CELERY_VENV (default target/celery-venv) with the
# pinned packages of bench/celery/requirements.txt from PyPI.
# Exit status 3: no venv could be made or the packages could not be installed;
# the reason is the last line on stderr, and the bench skips Celery.
# Environment: RABBITMQ_URL, BENCH_DATABASE_ADMIN_URL (as for the bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CELERY_VENV:-$ROOT/target/celery-venv}"
REQUIREMENTS="$ROOT/bench/celery/requirements.txt"
PYTHON="${PYTHON:-python3}"

skip() { printf 'bench-celery: %s\n' "$*" >&2; exit 3; }

stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || skip "no $PYTHON on PATH"
  printf 'bench-celery: making %s\n' "$VENV" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2 \
    || skip "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$REQUIREMENTS" >&2 \
    || { rm -rf "$VENV"; skip "pip could not install bench/celery/requirements.txt (no access to PyPI?)"; }
  printf '%s\n' "$want" >"$stamp"
fi

exec "$VENV/bin/python" "$ROOT/bench/celery/run.py" "$@"
