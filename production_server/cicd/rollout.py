"""Put a release live: switch the pointer, then see every worker serve it.

The workers follow the pointer between two tasks (``production_server.releases``),
so there is nothing to restart; what is left is to confirm it. ``/api/model``
answers with the version and the worker that served it (``served_by``), and
RabbitMQ hands tasks to its consumers in turn, so asking a few times reaches
every worker. If they do not all serve the release in time, the pointer goes
back to where it was.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from ..releases import Release, Releases
from . import PipelineError


def get_json(url: str, timeout: float = 10.0) -> dict:
    """GET ``url``'s JSON answer; {} when the server does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body while workers are short
        try:
            return json.loads(exc.read())
        except ValueError:
            return {}
    except (OSError, ValueError):
        return {}


def confirm(url: str, version: str, timeout: float) -> dict[str, str]:
    """Wait until as many workers as /healthz counts have answered /api/model with ``version``."""
    deadline = time.monotonic() + timeout
    latest: dict[str, str] = {}
    workers = 0
    while time.monotonic() < deadline:
        workers = get_json(f"{url}/healthz", timeout=3).get("workers", 0)
        answer = get_json(f"{url}/api/model")
        if "served_by" in answer:
            latest[answer["served_by"]] = answer.get("version", "?")
        serving = sorted(w for w, v in latest.items() if v == version)
        if workers and len(serving) >= workers:
            return latest
        time.sleep(0.05)
    raise TimeoutError(f"{sum(v == version for v in latest.values())} of {workers} worker(s) served {version}")


def go_live(releases: Releases, release: Release, *, url: str, timeout: float, entry: dict) -> dict:
    """Switch to ``release``, confirm it, and append ``entry`` (plus what was measured) to the history."""
    before = releases.current()
    started = time.monotonic()
    releases.switch(release)
    try:
        seen = confirm(url, release.version, timeout)
    except TimeoutError as exc:
        if before is not None:
            releases.switch(before)
        back = f"switched back to release {before.number}" if before else "no release to switch back to"
        raise PipelineError(f"The workers did not all serve release {release.number} within {timeout:g} s "
                        f"({exc}); {back}. See `labkit logs`, then push again.") from None
    record = {
        **entry,
        "release": release.number,
        "version": release.version,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "workers_confirmed": sum(v == release.version for v in seen.values()),
        "seconds_to_serve": round(time.monotonic() - started, 2),
    }
    releases.record(record)
    return record
