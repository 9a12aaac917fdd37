"""Celery's ``rpc://`` result backend, with three changes for a web front end.

1. It gives up while the broker is down. Before each task is sent, the stock
   backend declares the caller's reply queue with ``retry=True`` and no
   limit: with the broker down, a web request hung there until the broker
   came back (seen here: > 30 s, no 503). We declare it with the bounded
   retry policy that publishing uses, so the view answers 503 at once.
2. It declares the reply queue once per channel, not before every task.
   The queue is auto-delete, so kombu never caches its declaration, and the
   stock backend paid a broker round trip per request (17% of the web
   process's time under load, measured with py-spy). A new channel, as
   after a broker restart, declares it again; so does a new result consumer.
3. Its result consumer survives a broker restart (``ResultConsumer`` below).
   Celery keeps one backend, so one reply queue and one consumer, per thread.
   When the broker went away, Celery 5.7's ``ResultConsumer._reconnect``
   (celery/celery#10179) first dropped the old consumer and connection, then
   opened new ones; while the broker was still down the second half failed,
   which left the thread with a new connection and the *old* consumer, bound
   to a dead channel, and for ever after:

   - ``consume_from`` trusted that consumer: ``add_queue`` declared the
     queue on the dead channel and raised amqp's ``RecoverableConnectionError``
     ("connection already closed"), a 500, on every request of that thread
     (after a graceful broker stop, when the channel had been closed); or
   - ``cancel()`` had failed on the dead socket (after ``kill -9``), the old
     consumer still believed it consumed the reply queue, so nobody consumed
     it: replies piled up in the queue and every request of that thread
     waited out its timeout, a 503, while ``/healthz`` (a ping on a fresh
     connection each time) said ok.

   Here a consumer and its connection are always replaced together: any
   broker error resets the thread to "no consumer" (Celery's own after-fork
   reset, no network I/O), the next result opens a fresh one, and a
   reconnect that fails is a kombu ``OperationalError``, which the view turns
   into a 503 at once.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.exceptions
from celery._state import task_join_will_block
from celery.backends import rpc
from kombu.common import maybe_declare
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)


class ResultConsumer(rpc.ResultConsumer):
    """The rpc result consumer of one thread, replaced whole after any broker error."""

    _connection: Any  # the base class's, set in start() and reset here

    #: bumped whenever the consumer is replaced: its reply queue may have been
    #: auto-deleted with the old connection, so the next task declares it again.
    generation = 0

    @cached_property
    def broker_errors(self) -> tuple[type[BaseException], ...]:
        """The transport's connection and channel errors (kombu names them per transport)."""
        connection = self.app.connection_for_read()
        return connection.connection_errors + connection.channel_errors

    def reset(self) -> None:
        """Forget the consumer and its connection without talking to the broker, as Celery's
        after-fork reset does (``on_after_fork``), also when the connection is half dead."""
        connection, self._connection, self._consumer = self._connection, None, None
        if connection is not None:
            self.generation += 1
            try:
                connection.collect()
            except self.broker_errors:
                pass  # a dead socket that fails to close: it is forgotten all the same

    def start(self, initial_task_id, **kwargs):
        """A consumer of this thread's reply queue on a fresh connection; on failure, nothing."""
        self.reset()
        try:
            super().start(initial_task_id, **kwargs)
        except BaseException:
            self.reset()  # never half of one: a connection without its consumer
            raise

    def consume_from(self, task_id):
        """Consume ``task_id``'s reply queue; after a broker error, once more on a fresh connection."""
        try:
            super().consume_from(task_id)
        except self.broker_errors as first:  # the consumer's channel died since the last request
            self.reset()
            try:
                super().consume_from(task_id)  # with no consumer: start()
            except self.broker_errors as exc:
                raise kombu.exceptions.OperationalError(f"cannot consume results ({exc})") from first

    def _reconnect(self):
        """After a broker error while waiting for a result (Celery's ``reconnect_on_error``): the
        thread's reply queue (the rpc backend has one per thread) on a fresh connection, or nothing
        and an ``OperationalError``, a 503, never Celery's RuntimeError "must be restarted", a 500."""
        logger.warning("the connection for results was lost: reconnecting")
        try:
            self.start(None, no_ack=self._no_ack)
        except self.broker_errors as exc:
            raise kombu.exceptions.OperationalError(f"the connection for results was lost ({exc})") from exc


class BoundedRPCBackend(rpc.RPCBackend):
    ResultConsumer = ResultConsumer

    def on_task_call(self, producer, task_id):
        if task_join_will_block():
            return
        channel = producer.channel
        declared = getattr(channel, "_labkit_reply_queues", None)
        if declared is None:
            declared = channel._labkit_reply_queues = set()
        key = (self.oid, self.result_consumer.generation)
        if key in declared:
            return
        maybe_declare(self.binding(channel), retry=True, **self.app.conf.task_publish_retry_policy)
        declared.add(key)
