"""Celery built from the Flask app's configuration (Flask's own Celery pattern)."""

from __future__ import annotations

import kombu.exceptions
from celery import Celery, Task
from flask import Flask

from .health import WorkerWatch


def celery_config(app: Flask) -> dict:
    timeout = float(app.config["PREDICT_TIMEOUT"])
    backend = app.config["RESULT_BACKEND"]
    if backend == "rpc://":
        # The same backend, but it gives up when the broker is down (see rpc_backend.py).
        backend = "production_server.rpc_backend:BoundedRPCBackend"
    return {
        "broker_url": app.config["BROKER_URL"],
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A worker killed mid-task must not lose the request: the message is
        # acknowledged only after the task ran, so RabbitMQ redelivers it
        # to another worker when the dead worker's connection drops.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # With the solo pool, late acks and a prefetch of 1, the worker
        # waits out its 2 s poll before the broker may send the next task
        # (measured: tasks handled in bursts every 2 s). Four in flight
        # avoid that; unacknowledged ones are redelivered if it dies.
        "worker_prefetch_multiplier": 4,
        # Importing TensorFlow in a prefork child takes ~4 s, Celery's
        # default limit for a child to start.
        "worker_proc_alive_timeout": 60,
        # Fail fast when the broker is down: the web answers 503 instead of hanging.
        "broker_connection_timeout": min(2.0, timeout),
        "broker_connection_retry_on_startup": True,
        # The web must not wait for a broker that is down: a couple of tries,
        # then a 503. (worker.py lets the workers retry forever instead.)
        "broker_connection_max_retries": 2,
        # Opening a connection (a gunicorn process's first publish, or one after the
        # broker went away) otherwise waits 2 s between tries: measured, every other
        # 503 took 2.05 s instead of 0.25 s. The same quick give-up as publishing.
        "broker_transport_options": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                     "interval_max": 0.2},
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(app))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    app.extensions["broker_errors"] = broker_errors(celery_app)
    app.extensions["worker_watch"] = worker_watch(app, celery_app)
    return celery_app


def broker_errors(celery_app: Celery) -> tuple[type[BaseException], ...]:
    """Every error that means "the broker did not do it": kombu's own, and the transport's
    connection and channel errors, which kombu lets through raw from some calls."""
    connection = celery_app.connection_for_write()  # no I/O: kombu only names the transport's errors
    return (kombu.exceptions.OperationalError, *connection.connection_errors, *connection.channel_errors)


def worker_watch(app: Flask, celery_app: Celery) -> WorkerWatch:
    """The background ping behind /healthz and the welcome page; its thread starts when first asked."""
    from .dispatch import ping

    timeout = float(app.config["HEALTH_TIMEOUT"])
    errors = app.extensions["broker_errors"]
    return WorkerWatch(lambda: ping(celery_app, timeout, errors),
                       interval=float(app.config["HEALTH_INTERVAL"]), timeout=timeout)
