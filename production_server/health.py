"""Which workers answer, kept fresh in the background: ``/healthz`` and ``/`` read it, never wait.

A broadcast ping cannot know how many workers to expect, so it always waits
its whole ``HEALTH_TIMEOUT`` (0.5 s) for replies. Done inside a request, that
held a gunicorn thread for the whole wait: 16 clients polling ``/healthz``
took most of the 16 threads and pushed predict's p50 from 8 to 215 ms. Here
one daemon thread per web process pings every ``HEALTH_INTERVAL`` seconds
(default 1) and keeps the last reading; a request answers from it at once,
with its age.

- **gunicorn's fork model.** gunicorn forks its worker processes, and a thread
  does not survive a fork: the thread is started by the first request that
  asks, in the process that serves it, and a forked child starts from scratch
  (``os.register_at_fork``), also if its parent had a thread (``--preload``).
- **It stops.** When nobody has asked for ``IDLE_AFTER`` seconds (no load
  balancer, no page open) it stops pinging, and the next request starts it
  again; at interpreter exit (gunicorn's worker exits with ``sys.exit``) it is
  stopped and joined.
- **Never ok on old news.** A ping that has waited more than ``hung_after``
  (its timeout and a second more: it is waiting for a broker, not for replies)
  or a reading older than ``stale_after`` is reported as unavailable, with its
  age. Measured: a broker that accepts the connection but does not answer (one
  restarting) held a ping for about 4 s, and /healthz said ok meanwhile.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger(__name__)

#: seconds between two pings, unless the app's HEALTH_INTERVAL says otherwise
INTERVAL = 1.0
#: seconds without anybody asking after which the thread stops (and starts again when asked)
IDLE_AFTER = 60.0


class Unreachable(RuntimeError):
    """What a ping function raises when it cannot ask the workers; the message says why."""


@dataclass(frozen=True)
class Reading:
    """The answer of one ping: worker names, or why there are none."""

    workers: tuple[str, ...]
    problem: str | None  # None when the broker answered (``workers`` may still be empty)
    checked_at: float | None  # time.monotonic() when the ping ended; None: no ping has ended yet

    def age(self, now: float | None = None) -> float | None:
        if self.checked_at is None:
            return None
        return max(0.0, (time.monotonic() if now is None else now) - self.checked_at)


NOT_YET = Reading((), "the first check of the workers has not finished yet", None)


class WorkerWatch:
    """Pings the workers in a background thread of this process and keeps the last reading.

    ``ping`` returns the names of the workers that replied, or raises
    ``Unreachable``; it runs in the background thread only.
    """

    def __init__(self, ping: Callable[[], list[str]], interval: float = INTERVAL, timeout: float = 0.5,
                 idle_after: float = IDLE_AFTER):
        self.ping = ping
        self.interval = interval
        # Replies come within ``timeout``; a ping still waiting a second later waits for the broker.
        self.hung_after = timeout + 1.0
        # A ping starts at most ``interval`` after the last one ended: news older than that and
        # a hung ping's wait means the thread is not pinging at all.
        self.stale_after = interval + self.hung_after
        self.first_wait = timeout + 2.0  # a first ping to a broker that is down gives up within ~1 s
        self.idle_after = idle_after
        self._exit_hook = False
        self._fresh_state()
        # A forked child (gunicorn forks its workers) has none of its parent's threads, and a lock
        # the parent's thread held would stay held: the child starts from scratch.
        after_fork = weakref.WeakMethod(self._fresh_state)
        os.register_at_fork(after_in_child=lambda: (method := after_fork()) and method())

    def _fresh_state(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._reading = NOT_YET
        self._pinging_since: float | None = None
        self._asked = time.monotonic()

    # -- what requests call ----------------------------------------------------------
    def reading(self) -> Reading:
        """The last reading, starting the thread if it does not run in this process. Waits only
        for a first reading (at most ``first_wait`` seconds), never for a ping once there is one."""
        with self._changed:
            self._asked = time.monotonic()
            self._ensure_running()
            if self._reading.checked_at is None:
                self._changed.wait_for(lambda: self._reading.checked_at is not None, timeout=self.first_wait)
            reading, pinging_since = self._reading, self._pinging_since
        now = time.monotonic()
        age = reading.age(now)
        if age is None:
            return reading
        waited = now - pinging_since if pinging_since is not None else 0.0
        if waited > self.hung_after or age > self.stale_after:
            return Reading((), f"no fresh news of the workers: the last check ended {age:.1f} s ago"
                               + (f" and the one since has waited {waited:.1f} s" if waited > self.hung_after else ""),
                           reading.checked_at)
        return reading

    # -- the thread ------------------------------------------------------------------
    def _ensure_running(self) -> None:
        """Start the thread unless it runs; with the lock held."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="worker-watch", daemon=True)
        self._thread.start()
        if not self._exit_hook:
            atexit.register(self.stop)
            self._exit_hook = True

    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (if it runs) and wait for it; a later request starts it again."""
        with self._lock:
            thread = self._thread
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                # Decided with the lock held, so that a request that asks now either keeps this
                # thread running or, once it has ended, starts a new one.
                if self._stopping.is_set() or time.monotonic() - self._asked > self.idle_after:
                    self._thread = None
                    self._reading = NOT_YET  # a later start must not serve this old reading
                    return
                started = self._pinging_since = time.monotonic()
            self._publish(self._check())
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _check(self) -> Reading:
        try:
            names = self.ping()
        except Unreachable as exc:
            return Reading((), str(exc), time.monotonic())
        except Exception as exc:  # a thread nobody watches: report the failure, never die silently
            logger.exception("the check of the workers failed")
            return Reading((), f"the check of the workers failed ({type(exc).__name__}: {exc})", time.monotonic())
        return Reading(tuple(sorted(names)), None, time.monotonic())

    def _publish(self, reading: Reading) -> None:
        with self._changed:
            self._reading, self._pinging_since = reading, None
            self._changed.notify_all()
