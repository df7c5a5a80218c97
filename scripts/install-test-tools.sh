#!/usr/bin/env bash
# Installs the pinned Python tools the integration tests run
# (scripts/test-tools-requirements.txt: schemathesis, openapi-spec-validator)
# into target/test-tools/venv, once, and again only when the pins or the
# Python version change. `make test` runs it before nextest; the tests fail,
# naming this script, when the tools are missing (they never skip).
# Prints the venv's bin directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROUNDHOUSE_TEST_TOOLS:-$ROOT/target/test-tools/venv}"
REQUIREMENTS="$ROOT/scripts/test-tools-requirements.txt"
PYTHON="${PYTHON:-python3}"

die() { printf 'install-test-tools: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON on PATH (on Debian/Ubuntu: apt-get install python3 python3-venv)"
stamp="$(cat "$REQUIREMENTS" <("$PYTHON" --version) | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/schemathesis" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  printf 'install-test-tools: installing %s into %s\n' "$(basename "$REQUIREMENTS")" "$VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! "$PYTHON" -m venv "$VENV" >&2; then
    # Debian and Ubuntu ship venv separately; install it where we may.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV" >&2 || die "'$PYTHON -m venv' failed"
    else
      die "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2 \
    || { rm -rf "$VENV"; die "pip could not install $REQUIREMENTS (no access to PyPI?)"; }
  printf '%s\n' "$stamp" >"$VENV/.stamp"
fi
"$VENV/bin/schemathesis" --version >/dev/null || die "schemathesis does not run"
echo "$VENV/bin"
