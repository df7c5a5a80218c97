// Roundhouse on Railway: infrastructure as code (`railway config plan` / `apply`,
// Railway CLI 5.42.1 or newer). Authored with the `railway` npm package's
// `railway/iac` module, pinned in package.json; `make check-deploy` type-checks
// this file (`npx tsc --noEmit`) and evaluates it.
//
// Declares PostgreSQL, RabbitMQ and the four services, all four built from this
// repository's deploy/Dockerfile (one image, four binaries) and told apart by
// their start command. What this cannot declare, and the first-time steps
// (shared variables, domains, Supabase instead of Railway's PostgreSQL), are in
// deploy/railway/README.md.
//
// The CLI runs this file with Node's type stripping: keep to erasable TypeScript
// (no enums, namespaces or parameter properties).
import {
  defineRailway,
  github,
  image,
  postgres,
  preserve,
  service,
  volume,
} from "railway/iac";
import type { BuildConfig, DeployConfig, VariableValue } from "railway/iac";

/** The GitHub repository Railway builds from: set it to yours. */
const REPO = "your-github-org/roundhouse";
const BRANCH = "main";

/** SIGTERM → SIGKILL window; the worker drains for WORKER_DRAIN_SECONDS within it. */
const WORKER_DRAIN_SECONDS = 45;
const DRAINING_SECONDS = 60;

/** Paths every service's image depends on (a push elsewhere rebuilds nothing). */
const SHARED_WATCH = [
  "/shared/**",
  "/vendor/**",
  "/migrations/**",
  "/Cargo.toml",
  "/Cargo.lock",
  "/deploy/Dockerfile",
];

function dockerBuild(...paths: string[]): BuildConfig {
  return {
    builder: "DOCKERFILE",
    dockerfilePath: "deploy/Dockerfile",
    watchPatterns: [...paths, ...SHARED_WATCH],
  };
}

/** Restart on crash (Railway's default, made explicit) and drain on redeploy. */
const deploy: DeployConfig = {
  restartPolicyType: "ON_FAILURE",
  restartPolicyMaxRetries: 10,
  drainingSeconds: DRAINING_SECONDS,
};

export default defineRailway((ctx, project) => {
  const db = postgres("Postgres");

  // RabbitMQ with its data on a volume: without it, queues and unconfirmed
  // messages are lost on every restart. Management UI on 15672 (generate a domain
  // for it by hand if wanted). The password is a shared variable set by hand
  // (deploy/railway/README.md); RabbitMQ applies these two only on first boot.
  const rabbitmqData = volume("rabbitmq-data");
  const rabbitmq = service("rabbitmq", {
    source: image("rabbitmq:4-management"),
    volumeMounts: { "/var/lib/rabbitmq": rabbitmqData },
    env: {
      RABBITMQ_DEFAULT_USER: "roundhouse",
      RABBITMQ_DEFAULT_PASS: ctx.shared.RABBITMQ_PASSWORD,
      // The node name (and so the data directory) must not change between deploys.
      RABBITMQ_NODENAME: "rabbit@localhost",
    },
    deploy: { restartPolicyType: "ALWAYS" },
  });

  // Settings every Roundhouse service gets. References are resolved by Railway at
  // deploy time; `preserve()` keeps a value set by hand in the dashboard (secrets,
  // optional settings) instead of removing it on the next `apply`.
  const common = (name: string): Record<string, string | VariableValue> => ({
    DATABASE_URL: db.env.DATABASE_URL,
    // Plain amqp over the private network (WireGuard-encrypted); vhost "/".
    RABBITMQ_URL:
      "amqp://${{rabbitmq.RABBITMQ_DEFAULT_USER}}:${{rabbitmq.RABBITMQ_DEFAULT_PASS}}" +
      "@${{rabbitmq.RAILWAY_PRIVATE_DOMAIN}}:5672/%2f",
    RABBITMQ_PREFIX: "roundhouse",
    LOG_FORMAT: "json",
    RUST_LOG: "info",
    OTEL_SERVICE_NAME: name,
    ROUNDHOUSE_SERVICE_TOKEN: ctx.shared.ROUNDHOUSE_SERVICE_TOKEN,
    // Set by hand (see the README), kept across applies:
    DATABASE_MIGRATION_URL: preserve(),
    SUPABASE_URL: preserve(),
    SUPABASE_JWT_SECRET: preserve(),
    SUPABASE_SERVICE_ROLE_KEY: preserve(),
    OPENAI_API_KEY: preserve(),
    ANTHROPIC_API_KEY: preserve(),
    LOVABLE_API_KEY: preserve(),
    OTEL_EXPORTER_OTLP_ENDPOINT: preserve(),
  });

  // HTTP API. Applies migrations before the new deployment starts (pre-deploy
  // runs in its own container with the same image and variables); the api would
  // also apply them at start, under the same advisory lock.
  const api = service("api", {
    source: github(REPO, { branch: BRANCH }),
    build: dockerBuild("/services/api/**"),
    start: "/usr/local/bin/roundhouse-api",
    preDeploy: "/usr/local/bin/roundhouse-api migrate",
    healthcheck: "/health",
    healthcheckTimeout: 120,
    replicas: 2,
    deploy,
    env: {
      ...common("roundhouse-api"),
      PORT: "8080",
      ALLOWED_ORIGINS: preserve(),
      DASHBOARD_PASSWORD: preserve(),
      // Railway's edge sets X-Real-IP to the client address.
      CLIENT_IP_HEADER: "x-real-ip",
    },
  });

  // Runs the jobs. Scale with `replicas` (Railway has no queue-length autoscaling).
  const worker = service("worker", {
    source: github(REPO, { branch: BRANCH }),
    build: dockerBuild("/services/worker/**"),
    start: "/usr/local/bin/roundhouse-worker",
    healthcheck: "/health",
    replicas: 2,
    deploy,
    env: {
      ...common("roundhouse-worker"),
      PORT: "8082",
      WORKER_DRAIN_SECONDS: String(WORKER_DRAIN_SECONDS),
      WORKER_CONCURRENCY: "32",
      HTTP_HANDLERS: preserve(),
      HTTP_HANDLER_SECRET: preserve(),
      ROUNDHOUSE_URL: preserve(),
    },
  });

  // Cron, delayed/retry promotion, lease reaper, dispatch sweep. Safe with
  // several replicas (FOR UPDATE SKIP LOCKED); the second is for availability.
  const scheduler = service("scheduler", {
    source: github(REPO, { branch: BRANCH }),
    build: dockerBuild("/services/scheduler/**"),
    start: "/usr/local/bin/roundhouse-scheduler",
    healthcheck: "/health",
    replicas: 2,
    deploy,
    env: {
      ...common("roundhouse-scheduler"),
      PORT: "8083",
    },
  });

  // Heavy LLM agents for Supabase edge functions (SSE/WebSocket streams), with an
  // embedded worker for async runs. Streams still open 20 s after SIGTERM are
  // interrupted and refunded: redeploy it in quiet periods.
  const agentExecutor = service("agent-executor", {
    source: github(REPO, { branch: BRANCH }),
    // It links roundhouse-worker (embedded worker for async runs).
    build: dockerBuild("/services/agent-executor/**", "/services/worker/**"),
    start: "/usr/local/bin/roundhouse-agent-executor",
    healthcheck: "/health",
    replicas: 2,
    deploy,
    env: {
      ...common("roundhouse-agent-executor"),
      PORT: "8081",
      WORKER_DRAIN_SECONDS: "40",
      RAILWAY_BACKEND_SECRET: ctx.shared.RAILWAY_BACKEND_SECRET,
      LLM_PROVIDERS: preserve(),
      MODEL_PRICING: preserve(),
      CREDITS_PER_1K_TOKENS: preserve(),
    },
  });

  return project("roundhouse", {
    resources: [db, rabbitmqData, rabbitmq, api, worker, scheduler, agentExecutor],
  });
});
