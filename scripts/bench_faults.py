"""Each fault of the README's reliability section, in one run: requests, failures, time to recover.

    .venv/bin/python scripts/bench_faults.py [--workers 2] [--clients 4]

It deploys a local deployment of its own (``bench-faults``, the settings of
``labkit up``), sends predictions from ``--clients`` clients through every
drill, and takes the deployment down at the end. Each drill runs 3 s of load,
then the fault, then waits for 20 requests in a row to succeed and for
``status`` to say all workers answer again. The tests (tests/test_supervised.py,
tests/test_resilience.py, tests/test_proxy.py) check the same faults'
behaviour; this script only measures, and its figures are comparable within
one run only: this machine is shared.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil

RECOVERY_S = 60.0  # give up waiting after this: the table then says "not within 60 s"


@dataclass
class Drill:
    fault: str
    act: Callable[[], float]  # does the fault; returns when recovery is measured from (time.monotonic())


def pid_of(lab, role: str) -> int:
    return next(row["pid"] for row in lab.status().processes if row["role"] == role)


def kill9(lab, role: str) -> float:
    psutil.Process(pid_of(lab, role)).kill()
    return time.monotonic()


def broker_stopped(lab, seconds: float = 8.0) -> float:
    """The node stopped (supervisord leaves it so) and started again ``seconds`` later: an outage."""
    lab.backend.stop_broker(lab.run_dir, lab.state)
    time.sleep(seconds)
    lab.backend.start_broker(lab.run_dir, lab.state)
    return time.monotonic()  # from when it answers again


def slow_clients(url: str, count: int, seconds: float = 12.0) -> float:
    """``count`` connections sending a request's headers a byte a second, for ``seconds``."""
    from labkit.experiments.load import Crowd, address

    host, port = address(url)
    with Crowd(port, count, "slow headers", seconds, host=host) as crowd:
        started = time.monotonic()
        crowd.thread.join()  # it trickles for its seconds, then stops
    return started


def run(lab, drill: Drill, clients: int, workers: int) -> list[str]:
    from labkit.experiments import load as _load
    from labkit.infra import procs

    wanted = f"healthy: {workers} of {workers} worker{'s' if workers != 1 else ''}"
    said: list[tuple[float, str]] = []  # what status said, every 0.2 s from the fault on

    def watch(stop: threading.Event) -> None:
        while not stop.is_set():
            said.append((time.monotonic(), lab.status().summary))
            stop.wait(0.2)

    with _load.recorded_load(lab.url, clients=clients, timeout=10) as load:
        time.sleep(3)
        began, stop = time.monotonic(), threading.Event()
        watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
        watcher.start()
        since = drill.act()
        procs.wait_until(lambda: load.first_run_of_successes(since, 20) is not None, timeout=RECOVERY_S,
                          interval=0.2)
        served = load.first_run_of_successes(since, 20)
        # status may say "healthy" for a moment after the fault (its news is up to 2.5 s old): wait for
        # what it says after it said anything else.
        procs.wait_until(lambda: time.monotonic() > since + 5 and said[-1][1] == wanted, timeout=RECOVERY_S,
                          interval=0.2)
        time.sleep(2)
        stop.set()
        watcher.join()
    during = load.statuses(sent_after=began)
    failed = sum(n for status, n in during.items() if status != 200)
    others = ", ".join(f"{n} × {status or 'no answer'}" for status, n in during.items() if status != 200) or "none"
    latencies = sorted((a.done - a.sent) * 1000 for a in load.answers(began) if a.status == 200)
    p95 = f"{latencies[int(0.95 * (len(latencies) - 1))]:.0f}" if latencies else "-"
    other = [when for when, summary in said if summary != wanted]
    if not other:
        told = "said healthy throughout"
    else:
        back = next((when for when, summary in said if when > other[-1] and summary == wanted), None)
        # "not ready: <why>" in one word: the why changes as the broker goes and comes back.
        shown = ", then ".join(dict.fromkeys(summary.split(":")[0] if summary.startswith("not ready") else summary
                                             for _, summary in said if summary != wanted))
        told = (f"{shown} until {back - since:.1f} s" if back else f"{shown}, not healthy within {RECOVERY_S:.0f} s")
    return [drill.fault, str(sum(load.statuses().values())), str(failed), others, p95,
            f"{served - since:.1f}" if served else f"not within {RECOVERY_S:.0f} s", told]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="Celery workers of the deployment (2)")
    parser.add_argument("--clients", type=int, default=4, help="clients sending predictions (4)")
    args = parser.parse_args(argv)

    import labkit
    from labkit.notebook.display import Table

    lab = labkit.deploy("local", name="bench-faults", workers=args.workers, settings=labkit.Settings.from_env())
    try:
        drills = [
            Drill("kill -9 of a worker", lambda: kill9(lab, "worker-1")),
            Drill("kill -9 of the gunicorn master", lambda: kill9(lab, "web")),
            Drill("kill -9 of the RabbitMQ node", lambda: kill9(lab, "rabbitmq")),
            Drill("RabbitMQ stopped for 8 s, then started", lambda: broker_stopped(lab)),
            Drill("100 clients sending headers a byte a second, 12 s", lambda: slow_clients(lab.url, 100)),
        ]
        rows = []
        for drill in drills:
            print(f"[bench] {drill.fault} ...", file=sys.stderr, flush=True)
            rows.append(run(lab, drill, args.clients, args.workers))
    finally:
        lab.destroy()
    header = ["fault, under load", "requests", "failed after it", "their answers", "p95 ms of the 200s",
              "20 in a row served after (s)", "what status said"]
    print(f"{args.clients} clients sending POST /api/predict (one row), a local deployment of {args.workers} "
          f"workers; times from the fault (from the broker's start for the outage)")
    print(Table(header, rows, right=(1, 2, 4, 5)).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
