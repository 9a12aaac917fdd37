"""labkit's one wait: until a condition holds, a time is up, or something says waiting is pointless."""

from __future__ import annotations

import time

import pytest

from labkit import DeployError
from labkit.infra import procs


def test_it_returns_as_soon_as_the_condition_holds():
    tries = iter([False, False, True])
    started = time.monotonic()
    assert procs.wait_until(lambda: next(tries), timeout=10, interval=0.01)
    assert time.monotonic() - started < 1


def test_it_gives_up_after_the_timeout():
    started = time.monotonic()
    assert not procs.wait_until(lambda: False, timeout=0.3, interval=0.05)
    assert 0.3 <= time.monotonic() - started < 2


def test_abort_stops_the_wait_at_once_with_its_own_error():
    # As when the process being waited for died: its log's end says more than a timeout would.
    calls = []

    def died():
        calls.append(1)
        if len(calls) == 3:
            raise DeployError("RabbitMQ stopped while starting")

    started = time.monotonic()
    with pytest.raises(DeployError, match="stopped while starting"):
        procs.wait_until(lambda: False, timeout=30, interval=0.01, abort=died)
    assert time.monotonic() - started < 2 and len(calls) == 3


def test_a_crowd_that_cannot_open_every_connection_closes_the_ones_it_opened(monkeypatch):
    """A server that refuses the third connection of a drill leaves no socket of the first two open."""
    import socket

    from labkit.experiments import load

    with socket.create_server(("127.0.0.1", 0)) as server:
        opened: list[socket.socket] = []
        real = socket.create_connection

        def third_refused(address, timeout=None):
            if len(opened) == 2:
                raise ConnectionRefusedError("the third is refused")
            opened.append(real(address, timeout=timeout))
            return opened[-1]

        monkeypatch.setattr(load.socket, "create_connection", third_refused)
        with pytest.raises(ConnectionRefusedError):
            with load.Crowd(server.getsockname()[1], 5, "slow headers"):
                pass
    assert len(opened) == 2 and all(sock.fileno() == -1 for sock in opened)
