"""A worker tries a broker that went away again every second (quick: no broker needed)."""

from __future__ import annotations

from celery.utils.imports import symbol_by_name


class RecordingConnection:
    """Stands in for kombu's Connection where Celery's consumer calls it: what it was asked."""

    def __init__(self):
        self.asked = {}

    def ensure_connection(self, errback=None, max_retries=None, **options):
        self.asked = {"max_retries": max_retries, **options}
        return self


def test_the_worker_reconnects_every_second_forever(monkeypatch):
    monkeypatch.setenv("SERVER_BROKER_URL", "amqp://nobody:nothing@127.0.0.1:1//")
    from production_server import worker

    consumer_class = symbol_by_name(worker.celery_app.conf.worker_consumer)
    assert consumer_class is worker.PromptConsumer
    consumer = consumer_class.__new__(consumer_class)  # the method alone: no blueprint, no broker
    consumer.app, consumer.first_connection_attempt, consumer.broker_connection_retry_attempt = worker.celery_app, False, 0
    conn = RecordingConnection()
    assert consumer.ensure_connected(conn) is conn
    # kombu's default would be 2, 2, 30: attempts 2, 6, 12, 20, 30 s after the loss.
    assert conn.asked["interval_start"] == 0 and conn.asked["interval_step"] == 1.0 and conn.asked["interval_max"] == 1.0
    assert conn.asked["max_retries"] is None  # forever
    assert "ensure_connection" not in vars(conn)  # the connection is left as it was
