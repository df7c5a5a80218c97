"""Deployment files: schema validation plus the rules the services rely on.

Run by `make check-deploy` (scripts/check-deploy.sh), which installs the pinned
tools first. What is checked, and against what:

* docker-compose.yml: the Compose Specification JSON schema vendored by
  check-jsonschema (`vendor.compose-spec`), then health checks, start order, drain
  and observability wiring.
* deploy/k8s: rendered with the real kustomize (`kubectl kustomize`), every object
  validated with kubernetes-validate's strict schemas (unknown fields refused) for
  the oldest and newest Kubernetes versions we support; KEDA objects against
  deploy/schemas/keda; then probes, ports, security, drain times, PDBs and the
  KEDA queue names against the broker's real topology.
* deploy/Dockerfile and .dockerignore against the Cargo workspace.
* deploy/grafana/roundhouse.json: parses, and every PromQL query uses only metric
  names the Rust sources emit.
* .railway/railway.ts: type-checks against the pinned `railway` package and,
  evaluated, declares what the services need.

The last tests feed broken manifests to the same validators, so a validator that
silently accepts everything cannot pass.
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMAS = ROOT / "deploy" / "schemas" / "keda"
RAILWAY = ROOT / ".railway"

# Kubernetes versions the manifests must validate against: the oldest we support
# (native preStop `sleep` needs 1.30+; PDB unhealthyPodEvictionPolicy is GA in 1.31)
# and the newest kubernetes-validate ships.
K8S_VERSIONS = ["1.31", "1.37"]

SERVICES = {
    # compose / k8s component -> (binary, default PORT)
    "api": ("roundhouse-api", 8080),
    "agent-executor": ("roundhouse-agent-executor", 8081),
    "worker": ("roundhouse-worker", 8082),
    "scheduler": ("roundhouse-scheduler", 8083),
}
# Packages under services/ that the image carries but no deployment runs:
# package -> binary.
TOOLS = {"roundhouse-cli": "roundhouse"}
IMAGE_UID = 10001
# Drain times hard-coded in services/agent-executor/src/startup.rs.
EXECUTOR_RUN_DRAIN = 20
EXECUTOR_SOCKET_DRAIN = 5
DEFAULT_WORKER_DRAIN = 25  # shared/config/src/env.rs
# Peak RSS measured by `make bench` (README "Performance"), MiB.
MEASURED_PEAK_MIB = {"api": 36, "worker": 29, "scheduler": 23, "agent-executor": 60}

# Metrics a change in progress will add, which the dashboard may already chart
# (none now: the queue gauges are the scheduler's, shared/db's queue_depths).
PENDING_METRICS: set[str] = set()
PROMETHEUS_BUILTIN = {"up"}


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_yaml_all(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    assert found, "kubectl not found: run `make check-deploy`, which installs it"
    return found


@cache
def rendered(directory: str) -> tuple[dict, ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(load_yaml_all(out))


def objects(kind: str, directory: str = "deploy/k8s") -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(directory) if o["kind"] == kind}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def configmap_data() -> dict[str, str]:
    return objects("ConfigMap")["roundhouse-config"]["data"]


def k8s_duration_env(container: dict, name: str, default: int) -> int:
    value = env_of(container).get(name) or configmap_data().get(name)
    return int(value) if value is not None else default


@cache
def keda_registry() -> referencing.Registry:
    resources = []
    for path in KEDA_SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(schema)
        resources.append((schema["$id"], resource))
        resources.append((path.name, resource))
    return referencing.Registry().with_resources(resources)


KEDA_KINDS = {
    "ScaledObject": "scaledobject.json",
    "TriggerAuthentication": "triggerauthentication.json",
}


def schema_errors(obj: dict) -> list[str]:
    """Strict schema errors for one Kubernetes object (built-in kinds and KEDA)."""
    kind = obj.get("kind")
    if obj.get("apiVersion", "").startswith("keda.sh/"):
        if kind not in KEDA_KINDS:
            return [f"{kind}: no schema in deploy/schemas/keda"]
        schema = json.loads((KEDA_SCHEMAS / KEDA_KINDS[kind]).read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=keda_registry())
        return [
            f"{kind}/{obj['metadata'].get('name')}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(map(str, e.path))
            errors.append(f"{kind}/{obj['metadata'].get('name')} (k8s {version}): {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(e.message)
    return errors


def pod_rules(deployment: dict) -> list[str]:
    """What every Roundhouse pod needs beyond the schema: start command, the PORT
    the probes and Service use, /health probes, non-root, resources."""
    errors = []
    name = deployment["metadata"]["name"]
    component = deployment["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
    if component not in SERVICES:
        return [f"{name}: unknown component label {component!r}"]
    binary, _ = SERVICES[component]
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"]
    if len(containers) != 1:
        errors.append(f"{name}: expected one container")
    c = containers[0]
    if c.get("command") != [f"/usr/local/bin/{binary}"]:
        errors.append(f"{name}: command {c.get('command')} is not /usr/local/bin/{binary}")
    port_env = env_of(c).get("PORT")
    if port_env is None or not port_env.isdigit():
        errors.append(f"{name}: PORT must be set explicitly to a number (got {port_env!r})")
        return errors
    port = int(port_env)
    named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if port not in named.values():
        errors.append(f"{name}: no containerPort {port} (= PORT)")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(probe_name)
        if not probe or "httpGet" not in probe:
            errors.append(f"{name}: {probe_name} must be an httpGet probe")
            continue
        get = probe["httpGet"]
        # Liveness must not restart a pod because PostgreSQL or RabbitMQ is
        # down: /health/live answers while the process does; /health reports
        # the dependencies (startup and readiness).
        wanted = "/health/live" if probe_name == "livenessProbe" else "/health"
        if get.get("path") != wanted:
            errors.append(f"{name}: {probe_name} path {get.get('path')!r} is not {wanted}")
        probe_port = get.get("port")
        resolved = named.get(probe_port) if isinstance(probe_port, str) else probe_port
        if resolved != port:
            errors.append(f"{name}: {probe_name} port {probe_port!r} is not the service's PORT {port}")
    sc_pod = pod.get("securityContext", {})
    sc = c.get("securityContext", {})
    if not sc_pod.get("runAsNonRoot") or sc_pod.get("runAsUser") != IMAGE_UID:
        errors.append(f"{name}: must run as non-root uid {IMAGE_UID}")
    if sc_pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        errors.append(f"{name}: seccompProfile RuntimeDefault missing")
    if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{name}: readOnlyRootFilesystem and allowPrivilegeEscalation: false required")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        errors.append(f"{name}: capabilities must drop ALL")
    resources = c.get("resources", {})
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(section, {}):
                errors.append(f"{name}: resources.{section}.{resource} missing")
    limit = resources.get("limits", {}).get("memory", "0Mi")
    if limit.endswith("Mi") and int(limit[:-2]) < 2 * MEASURED_PEAK_MIB[component]:
        errors.append(f"{name}: memory limit {limit} leaves no headroom over the measured peak")
    if pod.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken should be false")
    return errors


def compose_schema() -> dict:
    files = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((files / "compose-spec.json").read_text())


def compose_schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def compose() -> dict:
    return load_yaml(ROOT / "docker-compose.yml")


def default_of(value: str | None) -> str | None:
    """`${VAR:-default}` -> default (compose interpolation with nothing set)."""
    if value is None:
        return None
    m = re.fullmatch(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", str(value))
    return m.group(1) if m else str(value)


def seconds(duration: str) -> int:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert m and duration, f"unsupported duration {duration!r}"
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


# ------------------------------------------------------------------ the named test


def test_docker_compose_yml_and_k8s_manifests_validate():
    """docker-compose.yml and k8s manifests validate (schemas, strict)."""
    # Compose: the official tool on the real file, then the same schema in-process.
    cli = subprocess.run(
        [shutil.which("check-jsonschema") or "check-jsonschema", "--builtin-schema",
         "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert compose_schema_errors(compose()) == []

    # Kubernetes: every object kustomize renders, both kustomizations, plus the
    # Secret template that is deliberately not part of them.
    errors = []
    count = 0
    for directory in ("deploy/k8s", "deploy/k8s/migrate"):
        for obj in rendered(directory):
            count += 1
            errors += schema_errors(obj)
    for obj in load_yaml_all((K8S / "secret.example.yaml").read_text()):
        count += 1
        errors += schema_errors(obj)
    assert not errors, "\n" + "\n".join(errors)
    assert count >= 15


# ------------------------------------------------------------------ compose rules


def test_compose_services_have_health_checks_and_start_order():
    services = compose()["services"]
    for name, (binary, port) in SERVICES.items():
        svc = services[name]
        assert svc["entrypoint"] == [f"/usr/local/bin/{binary}"], name
        assert svc["environment"]["PORT"] == str(port), name
        test = " ".join(svc["healthcheck"]["test"])
        assert "curl -fsS http://localhost:$${PORT}/health" in test, name
        deps = svc["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["rabbitmq"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert any(p.split(":")[-1] == str(port) for p in svc["ports"]), name
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["entrypoint"] == ["/usr/local/bin/roundhouse-api"]
    for dep in ("postgres", "rabbitmq"):
        assert services[dep]["healthcheck"]["test"], dep
    assert services["rabbitmq"]["image"].endswith("-management")


def test_compose_stop_grace_exceeds_the_drains():
    services = compose()["services"]
    worker = services["worker"]
    drain = int(default_of(worker["environment"].get("WORKER_DRAIN_SECONDS")) or DEFAULT_WORKER_DRAIN)
    assert seconds(worker["stop_grace_period"]) > drain + 5
    executor = services["agent-executor"]
    executor_drain = int(default_of(executor["environment"].get("WORKER_DRAIN_SECONDS")) or DEFAULT_WORKER_DRAIN)
    needed = max(EXECUTOR_RUN_DRAIN, executor_drain) + EXECUTOR_SOCKET_DRAIN
    assert seconds(executor["stop_grace_period"]) > needed


def test_compose_observability_wiring():
    doc = compose()
    services = doc["services"]
    # Traces: every service exports OTLP to a collector that is in the default stack.
    for name in SERVICES:
        endpoint = services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", endpoint).groups()
        assert host in services and "profiles" not in services[host], endpoint
        assert any(p.split(":")[-1] == port for p in services[host]["ports"]), endpoint
    # Metrics and dashboards under the `observability` profile.
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
    # Prometheus scrapes exactly the four services on their compose PORT.
    prom = load_yaml(ROOT / "deploy" / "prometheus.yml")
    targets = {
        t for job in prom["scrape_configs"] if job["job_name"] == "roundhouse"
        for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {f"{n}:{services[n]['environment']['PORT']}" for n in SERVICES}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in prom["scrape_configs"])
    # Grafana: provisioned Prometheus data source (the dashboard's default uid) and
    # a dashboard provider whose path is where compose mounts the JSON.
    prov = ROOT / "deploy" / "grafana" / "provisioning"
    ds = load_yaml(prov / "datasources" / "roundhouse.yml")["datasources"]
    prometheus_ds = next(d for d in ds if d["type"] == "prometheus")
    assert prometheus_ds["url"] == "http://prometheus:9090" and prometheus_ds["uid"] == "prometheus"
    provider = load_yaml(prov / "dashboards" / "roundhouse.yml")["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith("./")}
    dashboard_target = next(t for t, s in mounts.items() if s.endswith("roundhouse.json"))
    assert os.path.dirname(dashboard_target) == provider["options"]["path"]


# ------------------------------------------------------------------ kubernetes rules


def test_kustomization_lists_every_manifest():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk, "kustomization.yaml must list every manifest in deploy/k8s"
    assert "secret.example.yaml" not in listed, "the Secret template must never be applied"
    migrate = load_yaml(K8S / "migrate" / "kustomization.yaml")
    assert migrate["images"] == kustomization["images"], "keep both image pins in step"
    assert migrate["namespace"] == kustomization["namespace"]


def test_k8s_deployments_probes_ports_and_security():
    deployments = objects("Deployment")
    assert set(deployments) == {f"roundhouse-{n}" for n in SERVICES}
    errors = [e for d in deployments.values() for e in pod_rules(d)]
    assert not errors, "\n" + "\n".join(errors)
    # Replicas: api and scheduler run two; the autoscaled ones leave it to the HPA.
    assert deployments["roundhouse-api"]["spec"]["replicas"] == 2
    assert deployments["roundhouse-scheduler"]["spec"]["replicas"] == 2
    assert "replicas" not in deployments["roundhouse-worker"]["spec"]
    assert "replicas" not in deployments["roundhouse-agent-executor"]["spec"]
    # Every container reads the shared ConfigMap and Secret.
    for d in deployments.values():
        refs = d["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": "roundhouse-config"}} in refs
        assert {"secretRef": {"name": "roundhouse-secrets"}} in refs


def test_k8s_termination_grace_and_prestop():
    deployments = objects("Deployment")
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        component = name.removeprefix("roundhouse-")
        if component in ("api", "agent-executor"):
            assert pre_stop >= 5, f"{name}: preStop sleep so endpoints go before SIGTERM"
        drain = k8s_duration_env(c, "WORKER_DRAIN_SECONDS", DEFAULT_WORKER_DRAIN)
        if component == "worker":
            assert grace > pre_stop + drain + 5, name
        if component == "agent-executor":
            assert grace > pre_stop + max(EXECUTOR_RUN_DRAIN, drain) + EXECUTOR_SOCKET_DRAIN, name
        assert grace > pre_stop, name


def test_k8s_services_and_disruption_budgets_select_the_pods():
    deployments = objects("Deployment")
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for name, d in deployments.items():
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels[name].items(), name

    def selects(selector: dict) -> set[str]:
        return {n for n, lab in labels.items() if selector.items() <= lab.items()}

    services = objects("Service")
    assert set(services) == {"roundhouse-api", "roundhouse-agent-executor"}
    for name, svc in services.items():
        assert selects(svc["spec"]["selector"]) == {name}, name
        ports = {p["name"] for p in deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"{name}: targetPort {p['targetPort']}"
    pdbs = objects("PodDisruptionBudget")
    covered = set()
    for name, pdb in pdbs.items():
        targets = selects(pdb["spec"]["selector"]["matchLabels"])
        assert len(targets) == 1, name
        covered |= targets
        target = deployments[next(iter(targets))]
        replicas = target["spec"].get("replicas")
        if "minAvailable" in pdb["spec"]:
            # minAvailable on a Deployment that can run one replica blocks drains.
            floor = replicas or objects("HorizontalPodAutoscaler").get(target["metadata"]["name"], {}).get("spec", {}).get("minReplicas", 1)
            assert pdb["spec"]["minAvailable"] < floor, name
    assert covered == set(deployments)


def test_keda_scales_the_worker_on_the_real_queue_names():
    topology = (ROOT / "shared" / "broker" / "src" / "topology.rs").read_text()
    assert 'format!("{}.q.{}", self.prefix, queue)' in topology, "queue naming changed: update worker.yaml"
    queue_rs = (ROOT / "shared" / "core" / "src" / "queue.rs").read_text()
    built_in = re.search(r"BUILT_IN: \[&'static str; \d+\] = \[(.*?)\];", queue_rs, re.S).group(1)
    queues = re.findall(r'"([a-z0-9_-]+)"', built_in)
    assert "agents" in queues
    worker_queues = [q for q in queues if q != "agents"]  # the default WORKER_QUEUES
    prefix = configmap_data()["RABBITMQ_PREFIX"]

    scaled = objects("ScaledObject")["roundhouse-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] in objects("Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "roundhouse-worker"
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["cooldownPeriod"] > 0
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["queueName"] for t in triggers) == sorted(f"{prefix}.q.{q}" for q in worker_queues)
    auths = objects("TriggerAuthentication")
    secret = load_yaml(K8S / "secret.example.yaml")
    concurrency = configmap_data()["WORKER_CONCURRENCY"]
    for t in triggers:
        assert t["type"] == "rabbitmq" and t["metadata"]["mode"] == "QueueLength"
        assert t["metadata"]["value"] == concurrency, "value follows WORKER_CONCURRENCY"
        auth = auths[t["authenticationRef"]["name"]]
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert refs["host"]["name"] == secret["metadata"]["name"]
        assert refs["host"]["key"] in secret["stringData"]
    # The executor is not on KEDA (streams): it has a CPU HPA instead.
    hpa = objects("HorizontalPodAutoscaler")["roundhouse-agent-executor"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "roundhouse-agent-executor"
    assert hpa["spec"]["minReplicas"] >= 2


def test_secret_template_holds_only_placeholders():
    secret = load_yaml(K8S / "secret.example.yaml")
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, f"{key} must be a placeholder"
        assert value.strip(), f"{key}: no empty values (an empty URL stops the service)"


# ------------------------------------------------------------------ Dockerfile


def workspace_packages() -> dict[str, Path]:
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    packages = {}
    for pattern in manifest["workspace"]["members"]:
        for member in sorted(glob.glob(str(ROOT / pattern))):
            toml = Path(member) / "Cargo.toml"
            if toml.exists():
                packages[tomllib.loads(toml.read_text())["package"]["name"]] = Path(member)
    return packages


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching (last match wins, `!` re-includes), for
    the simple patterns this repository uses."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            candidates = [p for prefix in prefixes for p in [prefix, prefix.split("/")[-1]]]
            pattern = pattern[3:]
        else:
            candidates = prefixes
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerfile_matches_the_workspace():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    packages = workspace_packages()
    in_services = {p for p, path in packages.items() if path.parent.name == "services"}
    services = {binary for binary, _ in SERVICES.values()}
    assert in_services == services | set(TOOLS)
    # The cook and the build use exactly the four service packages and the CLI.
    p_lists = [set(re.findall(r"-p (\S+)", m)) for m in re.findall(r"cargo (?:chef cook|build)[^\n]*\\\n([^\n]*)", dockerfile)]
    assert len(p_lists) >= 2 and all(p == in_services for p in p_lists), p_lists
    copied = set(re.search(r"for b in ([^;]*);", dockerfile).group(1).split())
    assert copied == services | set(TOOLS.values())
    assert "--locked" in dockerfile and "SQLX_OFFLINE=true" in dockerfile
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in dockerfile
    assert f"--uid {IMAGE_UID}" in dockerfile
    assert "COPY vendor vendor" in dockerfile
    # Every binary a deployment starts is one the image contains.
    starts = set()
    for svc in compose()["services"].values():
        if "entrypoint" in svc:
            starts.add(svc["entrypoint"][0])
    for d in objects("Deployment").values():
        starts.add(d["spec"]["template"]["spec"]["containers"][0]["command"][0])
    assert {Path(s).name for s in starts} <= copied, starts


def test_dockerignore_keeps_the_build_inputs():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["Cargo.toml", "Cargo.lock", "vendor/sqlx-core/Cargo.toml", "vendor/sqlx-core/src/lib.rs"]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "migrations").iterdir()]
    for path in workspace_packages().values():
        rel = path.relative_to(ROOT)
        needed += [f"{rel}/Cargo.toml", f"{rel}/src/main.rs"]
    kept = [p for p in needed if dockerignored(p, patterns)]
    assert kept == [], f".dockerignore drops build inputs: {kept}"
    for dropped in ("target/release/x", ".git/HEAD", "shared/db/target/x", ".railway/node_modules/x",
                    "deploy/k8s/api.yaml", "services/api/node_modules/x"):
        assert dockerignored(dropped, patterns), dropped


def test_docker_build_context_resolves_with_cargo(tmp_path):
    """What `docker build` would see (the repository minus .dockerignore) is a
    workspace cargo resolves with --locked, and each service package has the
    binary the Dockerfile copies. (Compiling it is the Docker build's job.)"""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = tmp_path / "context"
    for directory, dirs, files in os.walk(ROOT):
        rel = Path(directory).relative_to(ROOT)
        dirs[:] = [d for d in dirs if not dockerignored(str(rel / d), patterns)]
        for name in files:
            if not dockerignored(str(rel / name), patterns):
                (context / rel).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(directory) / name, context / rel / name)
    result = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--no-deps"],
        cwd=context, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    resolve = subprocess.run(
        ["cargo", "tree", "--locked", "--depth", "0", "-e", "normal",
         *[arg for binary, _ in SERVICES.values() for arg in ("-p", binary)],
         *[arg for package in TOOLS for arg in ("-p", package)]],
        cwd=context, capture_output=True, text=True,
    )
    assert resolve.returncode == 0, resolve.stderr
    packages = {p["name"]: p for p in json.loads(result.stdout)["packages"]}
    for package, binary in [(b, b) for b, _ in SERVICES.values()] + list(TOOLS.items()):
        bins = {t["name"] for t in packages[package]["targets"] if "bin" in t["kind"]}
        assert binary in bins, f"{package}: no binary named {binary} ({bins})"


# ------------------------------------------------------------------ Grafana


def emitted_metrics() -> dict[str, str]:
    """metric name -> counter | gauge | histogram, from the Rust sources."""
    found = {}
    for path in list((ROOT / "services").rglob("*.rs")) + list((ROOT / "shared").rglob("*.rs")):
        for kind, name in re.findall(r'metrics::(counter|gauge|histogram)!\(\s*"([a-z0-9_]+)"', path.read_text()):
            found[name] = kind
    return found


def test_grafana_dashboard_uses_existing_metrics():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "roundhouse.json").read_text())
    assert dashboard["uid"] == "roundhouse" and dashboard["panels"]
    metrics = emitted_metrics()
    assert "roundhouse_jobs_total" in metrics, "metric extraction broke"
    known = set(metrics) | PENDING_METRICS | PROMETHEUS_BUILTIN
    used = set()
    problems = []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), f"{panel['title']}: unbalanced parentheses"
            for name in re.findall(r"\broundhouse_[a-z0-9_]+", expr):
                suffixed = re.fullmatch(r"(.*)_(bucket|sum|count)", name)
                if name in known:
                    base = name
                elif suffixed and metrics.get(suffixed.group(1)) == "histogram":
                    base = suffixed.group(1)
                else:
                    problems.append(f"{panel['title']}: unknown metric {name}")
                    continue
                # The exporter gives buckets only to *_seconds histograms
                # (shared/telemetry); the other histograms are summaries.
                if name.endswith("_bucket") and not base.endswith("_seconds"):
                    problems.append(f"{panel['title']}: {name}: {base} is exported as a summary")
                if re.search(name + r"\{[^}]*quantile=", expr) and base.endswith("_seconds"):
                    problems.append(f"{panel['title']}: {base} is a histogram, not a summary")
                used.add(base)
    assert not problems, "\n" + "\n".join(problems)
    # The board covers what operators look at first.
    for required in ("roundhouse_jobs_total", "roundhouse_job_duration_seconds", "roundhouse_job_wait_seconds",
                     "roundhouse_queue_depth", "roundhouse_queue_oldest_waiting_seconds",
                     "roundhouse_publish_confirmed_total", "roundhouse_publish_failed_total",
                     "roundhouse_leases_reaped_total", "roundhouse_redispatched_total",
                     "roundhouse_schedule_tick_lateness_seconds", "roundhouse_http_request_duration_seconds",
                     "roundhouse_agent_runs_total", "roundhouse_broker_disconnects_total",
                     "roundhouse_job_retries_total", "roundhouse_llm_tokens_total",
                     "roundhouse_credits_used_total"):
        assert required in used, f"dashboard has no panel for {required}"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"


# ------------------------------------------------------------------ Railway


def npx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["npx", "--no-install", *args], cwd=RAILWAY, capture_output=True, text=True)


def test_railway_ts_type_checks():
    result = npx("tsc", "--noEmit", "-p", "tsconfig.json")
    assert result.returncode == 0, result.stdout + result.stderr


@cache
def railway_project() -> dict:
    script = (
        "import { createRailwayContext, project } from 'railway/iac';"
        "const mod = await import('./railway.ts');"
        "const def = await mod.default(createRailwayContext({ environment: 'production' }), project);"
        "process.stdout.write(JSON.stringify(def));"
    )
    result = subprocess.run(
        ["node", "--import", "tsx", "--input-type=module", "-e", script],
        cwd=RAILWAY, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_railway_ts_declares_the_stack():
    project = railway_project()
    resources = {r["address"]: r for r in project["resources"]}
    assert resources["database.Postgres"]["engine"] == "postgres"
    rabbit = resources["service.rabbitmq"]
    assert rabbit["source"]["image"] == "rabbitmq:4-management"
    mounts = {a["mountPath"]: a["volume"] for a in rabbit["volumeAttachments"].values()}
    assert mounts["/var/lib/rabbitmq"] in resources
    for name, (binary, port) in SERVICES.items():
        svc = resources[f"service.{name}"]
        assert svc["source"]["type"] == "github"
        assert svc["build"]["builder"] == "DOCKERFILE"
        assert svc["build"]["dockerfilePath"] == "deploy/Dockerfile"
        assert f"/services/{name}/**" in svc["build"]["watchPatterns"]
        assert "/shared/**" in svc["build"]["watchPatterns"]
        deploy = svc["deploy"]
        assert deploy["startCommand"] == f"/usr/local/bin/{binary}"
        assert deploy["healthcheckPath"] == "/health"
        assert deploy["numReplicas"] >= 1
        assert deploy["restartPolicyType"] == "ON_FAILURE"
        variables = svc["variables"]
        assert variables["PORT"]["value"] == str(port)
        assert variables["DATABASE_URL"] == {"type": "reference", "resource": "database.Postgres", "output": "DATABASE_URL"}
        assert "${{rabbitmq.RAILWAY_PRIVATE_DOMAIN}}" in variables["RABBITMQ_URL"]["value"]
        drain = int(variables.get("WORKER_DRAIN_SECONDS", {}).get("value", DEFAULT_WORKER_DRAIN))
        if name == "worker":
            assert deploy["drainingSeconds"] > drain + 5
        if name == "agent-executor":
            assert deploy["drainingSeconds"] > max(EXECUTOR_RUN_DRAIN, drain) + EXECUTOR_SOCKET_DRAIN
        for key, value in variables.items():
            if value.get("type") == "reference":
                assert value["resource"] in resources, f"{name}.{key} references a missing resource"
    assert resources["service.api"]["deploy"]["preDeployCommand"] == ["/usr/local/bin/roundhouse-api migrate"]
    assert resources["service.agent-executor"]["variables"]["RAILWAY_BACKEND_SECRET"]["type"] == "sharedReference"


# ------------------------------------------------------------------ the checks can fail


def test_validators_reject_broken_manifests():
    deployment = copy.deepcopy(objects("Deployment")["roundhouse-api"])
    assert schema_errors(deployment) == [] and pod_rules(deployment) == []

    probe_port = copy.deepcopy(deployment)
    probe_port["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "abc"
    assert any("readinessProbe port 'abc'" in e for e in pod_rules(probe_port))

    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    assert schema_errors(unknown_field), "strict schema must refuse unknown fields"

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "2"
    assert schema_errors(wrong_type)

    root = copy.deepcopy(deployment)
    del root["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert pod_rules(root)

    scaled = objects("ScaledObject")["roundhouse-worker"]
    assert schema_errors(scaled) == []
    for mutate in (
        lambda s: s["spec"]["triggers"][0]["metadata"].__setitem__("value", 32),
        lambda s: s["spec"]["triggers"][0]["metadata"].__setitem__("mode", "Length"),
        lambda s: s["spec"]["triggers"][0]["metadata"].__setitem__("queue", "x"),
        lambda s: s["spec"].__setitem__("maxReplicas", 3),
        lambda s: s["spec"]["triggers"][0].pop("metadata"),
    ):
        broken = copy.deepcopy(scaled)
        mutate(broken)
        assert schema_errors(broken), broken["spec"]
    auth = copy.deepcopy(objects("TriggerAuthentication")["roundhouse-rabbitmq"])
    assert schema_errors(auth) == []
    del auth["spec"]["secretTargetRef"][0]["key"]
    assert schema_errors(auth)

    doc = compose()
    doc["services"]["worker"]["stop_grace_periods"] = "40s"
    assert compose_schema_errors(doc)
    doc = compose()
    doc["services"]["worker"]["depends_on"] = {"postgres": {"condition": "service_ready"}}
    assert compose_schema_errors(doc)
    doc = compose()
    doc["services"]["worker"]["healthcheck"] = "curl -fsS http://localhost:8082/health"
    assert compose_schema_errors(doc)
