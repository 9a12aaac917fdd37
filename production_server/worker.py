"""What ``celery -A production_server.worker worker`` runs.

labkit starts each worker as its own process with the solo pool
(``-P solo``): one process, one model in memory, and scaling means starting
or stopping processes, as ``docker compose --scale worker=N`` does with
containers.
"""

from __future__ import annotations

from celery.signals import worker_init, worker_process_init

from . import create_app, tasks

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
# A worker outlives a broker outage: it keeps reconnecting until the broker is back.
celery_app.conf.broker_connection_max_retries = None
celery_app.conf.broker_transport_options = {}  # kombu's own patient reconnection, not the web's quick give-up


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
