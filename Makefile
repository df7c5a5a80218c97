# Roundhouse — developer entry points. `make` (or `make help`) lists the targets.
# GNU make; every recipe runs in bash with -euo pipefail.

SHELL        := bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS    += --no-print-directory

CARGO        ?= cargo
DATABASE_URL ?= postgres://postgres@localhost:5432/roundhouse
RABBITMQ_URL ?= amqp://guest:guest@localhost:5672/%2f
export DATABASE_URL RABBITMQ_URL

BIN_DIR      := $(or $(CARGO_TARGET_DIR),target)/debug
# Extra arguments: `make test NEXTEST_ARGS='-p roundhouse-db'`, `make bench BENCH_ARGS='--single-jobs 10000 --no-celery'`.
NEXTEST_ARGS ?=
BENCH_ARGS   ?=
# `make check-deploy CHECK_DEPLOY_ARGS='-k railway'`: extra pytest arguments.
CHECK_DEPLOY_ARGS ?=
# `docker compose` (v2 plugin) or the standalone docker-compose.
COMPOSE      ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: help run demo build test test-chaos lint fmt migrate bench up down logs \
        clean-test services nextest check-deploy

help: ## list the targets
	@echo "Roundhouse make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: NEXTEST_ARGS, BENCH_ARGS, ALL=1 (clean-test), DATABASE_URL, RABBITMQ_URL,"
	@echo "           API_PORT/AGENT_EXECUTOR_PORT/WORKER_PORT/SCHEDULER_PORT (run, demo)"

services: ## start local PostgreSQL and RabbitMQ if they are not reachable
	@scripts/ensure-services.sh

run: ## migrate and run all four services locally (Ctrl-C stops them)
	@scripts/run.sh

demo: ## like run, then enqueue sample jobs and show their status
	@scripts/demo.sh

build: ## cargo build --bins (debug)
	$(CARGO) build --bins

nextest:
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install cargo-nextest --locked

test: nextest ## every test (needs PostgreSQL + RabbitMQ; installs pinned Python test tools), chaos tests excluded
	@scripts/ensure-services.sh
	@scripts/ensure-chromium.sh
	@scripts/clean-test-resources.sh
	@scripts/install-test-tools.sh >/dev/null
	$(CARGO) build --bins
	$(CARGO) nextest run --workspace --no-fail-fast $(NEXTEST_ARGS)

test-chaos: nextest ## the #[ignore]d chaos tests, one at a time; restores services afterwards
	@scripts/ensure-services.sh
	$(CARGO) build --bins
	@rc=0; \
	$(CARGO) nextest run --workspace --run-ignored only -E 'test(/chaos/)' --test-threads 1 $(NEXTEST_ARGS) || rc=$$?; \
	echo "==> making sure PostgreSQL and RabbitMQ are running again"; \
	scripts/ensure-services.sh || { [ "$$rc" != 0 ] || rc=1; }; \
	exit $$rc

check-deploy: ## validate compose, k8s (+KEDA), Dockerfile, Grafana board, .railway/railway.ts (installs pinned tools)
	@scripts/check-deploy.sh $(CHECK_DEPLOY_ARGS)

lint: ## rustfmt check + clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the workspace
	$(CARGO) fmt --all

migrate: ## create the database if missing and apply migrations
	@scripts/ensure-services.sh
	@scripts/ensure-database.sh
	$(CARGO) build --bin roundhouse-api
	$(BIN_DIR)/roundhouse-api migrate

# One build for the services and the bench: `cargo run -p roundhouse-bench`
# would resolve other features and compile the shared crates a second time.
bench: ## the benchmark (release build): bench/results.{json,md}, bench/chart.svg; pass BENCH_ARGS
	@scripts/ensure-services.sh
	$(CARGO) build --release --workspace --bins
	$(or $(CARGO_TARGET_DIR),target)/release/roundhouse-bench $(BENCH_ARGS)

up: ## docker compose: build the image and start the whole stack
	$(COMPOSE) up -d --build

down: ## docker compose: stop the stack (volumes kept)
	$(COMPOSE) down

logs: ## docker compose: follow the logs
	$(COMPOSE) logs -f

clean-test: ## drop leftover rh_test_* databases and rhtest_* queues/exchanges (ALL=1: even in-use ones)
	@scripts/clean-test-resources.sh $(if $(filter 1 yes true,$(ALL)),--all)
