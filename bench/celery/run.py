"""Runs the no-op workload of `make bench` through Celery and prints JSON.

Called by scripts/bench-celery.sh (which makes the venv). Measures, like the
Roundhouse bench, from the first enqueue until every task has its SUCCESS row
in the PostgreSQL result backend:
1. single: `--jobs` tasks, one `.delay()` per task from `--clients` threads;
2. batch: `--batch-jobs` tasks as `group`s of `--batch-size` signatures
   (`group(...).apply_async()` publishes them over one producer) from
   `--batch-senders` threads.
The worker is `celery worker --pool prefork --concurrency C` (C = the CPU
count unless `--concurrency`), started here and stopped at the end; its RSS is
the sum over the main process and its pool children.

Progress goes to stderr; stdout gets one JSON object.
"""

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit, urlunsplit

HERE = os.path.dirname(os.path.abspath(__file__))
DATABASE = "celery_bench"
BUCKET_SECONDS = 0.25


def log(message):
    print(f"  celery: {message}", file=sys.stderr, flush=True)


def kombu_url(url):
    """`amqp://u:p@host:5672/%2f` (the vhost `/`, as lapin spells it) → `…//`."""
    parts = urlsplit(url)
    path = parts.path
    if path.lower() in ("/%2f", "/"):
        path = "//"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def database_url(admin_url, database):
    parts = urlsplit(admin_url)
    return urlunsplit(("postgresql+psycopg2", parts.netloc, "/" + database, parts.query, ""))


def proc_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pid):
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def rss_mb(pid, field):
    return sum(proc_kb(p, field) for p in process_tree(pid)) / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch-jobs", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-senders", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prefetch-multiplier", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    broker_url = kombu_url(
        os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    )
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["CELERY_RESULT_URL"] = "db+" + database_url(admin_url, DATABASE)
    os.environ["CELERY_BENCH_CLIENTS"] = str(max(args.clients, args.batch_senders))
    os.environ["CELERY_BENCH_PREFETCH"] = str(args.prefetch_multiplier)
    os.environ.setdefault("CELERY_BENCH_QUEUE", "rhbench_celery")

    import celery
    import psycopg2
    import sqlalchemy
    from celery import group

    sys.path.insert(0, HERE)
    import noop_app

    # A fresh result database.
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DATABASE}")
    app = noop_app.app
    # Create celery_taskmeta here, not racily in both pool children.
    app.backend.ResultSession().close()
    results = psycopg2.connect(admin_url.rsplit("/", 1)[0] + "/" + DATABASE)
    results.autocommit = True

    # An empty queue of our own.
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_declare(noop_app.QUEUE, durable=True, auto_delete=False)
        channel.queue_purge(noop_app.QUEUE)

    ready_file = os.path.join(tempfile.mkdtemp(prefix="celery-bench-"), "ready")
    env = dict(
        os.environ,
        CELERY_BENCH_READY_FILE=ready_file,
        PYTHONPATH=HERE,
        # Celery's warning about running as root (as in a container) is noise here.
        PYTHONWARNINGS="ignore:You're running the worker with superuser privileges",
    )
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "noop_app", "worker",
            "--pool", "prefork", "--concurrency", str(args.concurrency),
            "--queues", noop_app.QUEUE, "--hostname", "rhbench@%h",
            "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while not os.path.exists(ready_file):
            if worker.poll() is not None or time.time() > deadline:
                raise SystemExit("the Celery worker did not start")
            time.sleep(0.1)
        time.sleep(2)
        idle_rss = rss_mb(worker.pid, "VmRSS:")
        log(f"worker ready: prefork x{args.concurrency}, idle RSS {idle_rss:.1f} MB")

        def counts():
            with results.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FILTER (WHERE status = 'SUCCESS'),"
                    "       count(*) FILTER (WHERE status = 'FAILURE')"
                    "  FROM celery_taskmeta"
                )
                return cur.fetchone()

        def wait_done(total, begin):
            deadline = time.time() + args.timeout
            while True:
                done, failed = counts()
                if failed:
                    raise SystemExit(f"{failed} Celery tasks failed")
                if done >= total:
                    polled = time.time()
                    break
                if time.time() > deadline:
                    raise SystemExit(f"only {done} of {total} Celery tasks done in time")
                time.sleep(0.2)
            # The last task's own date_done is the end (the 200 ms poll is not),
            # unless the clocks disagree.
            with results.cursor() as cur:
                cur.execute("SELECT extract(epoch FROM max(date_done))::float8 FROM celery_taskmeta")
                last = cur.fetchone()[0]
            end = last if last and begin < last <= polled + 1 else polled
            return end

        def timeline(begin, end):
            with results.cursor() as cur:
                cur.execute(
                    "SELECT floor((extract(epoch FROM date_done)::float8 - %s) / %s)::int AS b,"
                    "       count(*) FROM celery_taskmeta"
                    " WHERE extract(epoch FROM date_done)::float8 >= %s GROUP BY b ORDER BY b",
                    (begin, BUCKET_SECONDS, begin),
                )
                rows = dict(cur.fetchall())
            buckets = int((end - begin) / BUCKET_SECONDS) + 1
            return [rows.get(i, 0) for i in range(buckets)]

        def run_threads(count, target):
            errors = []

            def guarded():
                try:
                    target()
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=guarded) for _ in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise SystemExit(f"enqueue failed: {errors[0]!r}")

        # 1. Single .delay() calls.
        log(f"single: {args.jobs} tasks, {args.clients} client threads")
        ticket = itertools.count()
        begin = time.time()

        def single_client():
            while next(ticket) < args.jobs:
                noop_app.noop.delay()

        run_threads(args.clients, single_client)
        enqueued = time.time() - begin
        end = wait_done(args.jobs, begin)
        single = {
            "jobs": args.jobs,
            "clients": args.clients,
            "enqueueSeconds": enqueued,
            "enqueuePerSecond": args.jobs / enqueued,
            "endToEndSeconds": end - begin,
            "jobsPerSecond": args.jobs / (end - begin),
            "bucketSeconds": BUCKET_SECONDS,
            "completedPerBucket": timeline(begin, end),
        }
        log(f"single: {single['jobsPerSecond']:.0f} tasks/s end to end")

        # 2. Groups of batch-size signatures.
        batches = -(-args.batch_jobs // args.batch_size)
        batch_total = batches * args.batch_size
        log(f"batch: {batch_total} tasks in groups of {args.batch_size}, {args.batch_senders} senders")
        ticket = itertools.count()
        begin = time.time()

        def batch_sender():
            while next(ticket) < batches:
                group(noop_app.noop.s() for _ in range(args.batch_size)).apply_async()

        run_threads(args.batch_senders, batch_sender)
        enqueued = time.time() - begin
        end = wait_done(args.jobs + batch_total, begin)
        batch = {
            "jobs": batch_total,
            "batchSize": args.batch_size,
            "senders": args.batch_senders,
            "enqueueSeconds": enqueued,
            "enqueuePerSecond": batch_total / enqueued,
            "endToEndSeconds": end - begin,
            "jobsPerSecond": batch_total / (end - begin),
            "bucketSeconds": BUCKET_SECONDS,
            "completedPerBucket": timeline(begin, end),
        }
        log(f"batch: {batch['jobsPerSecond']:.0f} tasks/s end to end")
        peak_rss = rss_mb(worker.pid, "VmHWM:")
        processes = len(process_tree(worker.pid))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        try:
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(noop_app.QUEUE)
        except Exception:  # noqa: BLE001 - tidying up only
            pass
        results.close()
        # WITH (FORCE): the backend's pooled connections of this process go too.
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.close()

    print(json.dumps({
        "version": celery.__version__,
        "sqlalchemyVersion": sqlalchemy.__version__,
        "pool": "prefork",
        "concurrency": args.concurrency,
        "prefetchMultiplier": args.prefetch_multiplier,
        "acksLate": True,
        "confirmPublish": True,
        "resultBackend": "SQLAlchemy on PostgreSQL (celery_taskmeta)",
        "queue": noop_app.QUEUE,
        "single": single,
        "batch": batch,
        "memory": {
            "processes": processes,
            "idleRssMb": idle_rss,
            "peakRssMb": peak_rss,
            "note": "sum over the worker's main process and its pool children "
                    "(shared copy-on-write pages counted in each)",
        },
    }))


if __name__ == "__main__":
    main()
