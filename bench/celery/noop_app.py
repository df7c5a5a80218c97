"""The Celery side of `make bench`: one no-op task, configured from the environment.

The worker (`celery -A noop_app worker`) and the load generator (`run.py`)
both import this module. Settings, stated in README "## Performance":
- broker: the bench's RabbitMQ (`RABBITMQ_URL`), on queue and exchange
  `CELERY_BENCH_QUEUE` so that nothing collides with Roundhouse's
  (`rhbench_*`) or anyone else's queues;
- result backend: SQLAlchemy on PostgreSQL (`CELERY_RESULT_URL`), one row per
  task in `celery_taskmeta`; a task counts as done when its row is SUCCESS;
- durability as close to Roundhouse's as Celery goes: persistent messages
  (Celery's default), publisher confirms (`confirm_publish`), acks after the
  task ran (`task_acks_late`), synchronous_commit left on;
- prefetch: `worker_prefetch_multiplier` 64, the value Celery's "Optimizing"
  guide suggests for many short tasks (its default of 4 and the value 1 are
  meant for long tasks).
"""

import os

from celery import Celery
from celery.signals import worker_ready

QUEUE = os.environ.get("CELERY_BENCH_QUEUE", "rhbench_celery")

app = Celery("noop_app")
app.conf.update(
    broker_url=os.environ["CELERY_BROKER_URL"],
    result_backend=os.environ["CELERY_RESULT_URL"],
    # Persistent messages are Celery's default; confirms are not.
    broker_transport_options={"confirm_publish": True},
    # One pooled broker connection per client thread: no thread waits for one.
    broker_pool_limit=int(os.environ.get("CELERY_BENCH_CLIENTS", "64")),
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("CELERY_BENCH_PREFETCH", "64")),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Nothing else listens: no event messages, no remote control queues.
    worker_send_task_events=False,
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop():
    return None


@worker_ready.connect
def _ready(**_kwargs):
    path = os.environ.get("CELERY_BENCH_READY_FILE")
    if path:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
