"""Celery's ``rpc://`` result backend, made to give up while the broker is down.

Before each task is sent, the stock backend declares the caller's reply queue
with ``retry=True`` and no limit: with the broker down, a web request hangs
there until the broker comes back (seen here: > 30 s, no 503). This subclass
declares it with the same bounded retry policy that publishing uses, so the
request fails fast and the view answers 503.
"""

from __future__ import annotations

from celery._state import task_join_will_block
from celery.backends.rpc import RPCBackend
from kombu.common import maybe_declare


class BoundedRPCBackend(RPCBackend):
    def on_task_call(self, producer, task_id):
        if not task_join_will_block():
            maybe_declare(self.binding(producer.channel), retry=True, **self.app.conf.task_publish_retry_policy)
