#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's Chromium through ChromeDriver.
# Installs both (packages chromium, chromium-driver) when they are missing and
# apt-get can run; otherwise says what to install. The tests fail, naming
# this script, when the browser is missing (they never skip).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo -n" || {
    echo "ensure-chromium: install the packages chromium and chromium-driver (needs root)" >&2
    exit 1
  }
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no apt-get; install Chromium and a matching ChromeDriver, on PATH as chromium and chromedriver" >&2
  exit 1
fi
echo "ensure-chromium: installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver >/dev/null \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }
command -v chromedriver >/dev/null 2>&1 || { echo "ensure-chromium: chromedriver still missing" >&2; exit 1; }
