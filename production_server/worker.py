"""What ``celery -A production_server.worker worker`` runs.

labkit starts each worker as its own process with the solo pool
(``-P solo``): one process, one model in memory, and scaling means starting
or stopping processes, as ``docker compose --scale worker=N`` does with
containers.
"""

from __future__ import annotations

import functools

from celery.signals import worker_init, worker_process_init
from celery.worker.consumer import Consumer

from . import create_app, tasks

RECONNECT_EVERY_S = 1.0


class PromptConsumer(Consumer):
    """Celery's consumer, trying a broker that went away again every second.

    kombu's ``ensure_connection`` waits 2, 4, 6 ... up to 30 s between
    attempts, and Celery has no setting for it: after a broker restart that
    took 13 s the worker came back at 20 s, after one of 21 s at 30 s, while
    the web tier had long been ready. An attempt costs one TCP connect.
    """

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, interval_start=0,
                                                   interval_step=RECONNECT_EVERY_S, interval_max=RECONNECT_EVERY_S)
        try:
            return super().ensure_connected(conn)
        finally:
            del conn.ensure_connection  # the instance's attribute: the class's method again


flask_app = create_app()
celery_app = flask_app.extensions["celery"]
# A worker outlives a broker outage: it keeps reconnecting until the broker is back.
celery_app.conf.broker_connection_max_retries = None
celery_app.conf.broker_transport_options = {}  # kombu's own patient reconnection, not the web's quick give-up
celery_app.conf.worker_consumer = f"{__name__}:PromptConsumer"


def _preload() -> None:
    # Load the model before the worker takes its first task, so the first
    # request is not the one that pays for importing TensorFlow.
    with flask_app.app_context():
        tasks.serving_model()


@worker_init.connect
def _preload_in_main_process(sender=None, **_) -> None:
    # With the prefork pool the main process only forks children: loading
    # TensorFlow there and forking it afterwards is unsafe, so leave it to them.
    pool = getattr(sender, "pool_cls", None)
    if "prefork" not in str(getattr(pool, "__module__", pool)):
        _preload()


@worker_process_init.connect
def _preload_in_child(**_) -> None:
    _preload()
