"""Follow a VM's console: its ``[labkit] step K/N`` markers become steps of the progress display.

The OpenStack backend reads the console log through Nova, the machine
backend from the file nspawn writes; either way the VM's own steps show as
they happen, numbered after the steps labkit ran before, and a FAILED
marker or a failed cloud-init module ends the wait with what the console
said before it.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from .._errors import DeployError
from ..notebook.progress import FAILED_RE, Progress, Step, failure, parse
from .procs import wait_until

# cloud-init's own words for a module that failed (a runcmd it could not even turn into a script,
# say), and for having run everything: the default final message, or the templates'.
MODULE_FAILED_RE = re.compile(r"(?:Running module|Failed to run module) ([\w-]+)\b.*?failed|Failed to run module ([\w-]+)")
FINISHED_RE = re.compile(r"Cloud-init v\. \S+ finished at|\[labkit\] \S+: cloud-init \S+ has run the user-data")
# cloud-init's tables of network devices, keys and fingerprints: long, and never why a step failed.
NOISE_RE = re.compile(r"ci-info: |SSH HOST KEY|^(ssh|ecdsa)-\S+ AAAA|cloud-init: (#|\d+ SHA256:)")


def follow(read: Callable[[], str], progress: Progress, timeout: float, poll: float, what: str = "VM",
           alive: Callable[[], bool] | None = None) -> list[Step]:
    """Record ``read()``'s markers on ``progress`` until its last step; return the VM's steps.

    ``alive`` (optional) says whether the VM still runs: a machine that
    powers off mid-way fails at once instead of at the timeout.
    """
    offset = progress.next_index() - 1
    seen: list[Step] = []
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        log = read()
        problem = failure(log) or module_failure(log)
        if problem:
            raise DeployError(f"Contextualization failed: {problem}. What the console said before:\n"
                              + "\n".join(before_failure(log))
                              + "\nFix it, then `labkit down` and `labkit up` again.")
        markers = parse(log)
        for step in markers[len(seen):]:
            progress.expect(offset + step.total + 1)  # + the wait for the server that follows
            progress.record(Step(offset + step.index, offset + step.total + 1, f"{what}: {step.what}", step.seconds))
        seen = markers
        if markers and markers[-1].index == markers[-1].total:
            return markers
        if FINISHED_RE.search(log):  # and the last step never reported
            raise DeployError(f"cloud-init has run the user-data, but the {what}'s step {len(seen) + 1} never "
                              "reported. The end of the console log:\n" + "\n".join(before_failure(log))
                              + "\nSee `labkit logs`, then `labkit down`.")
        if alive is not None and not alive():
            raise DeployError(f"The {what} stopped before its steps were done. The end of its console:\n"
                              + "\n".join(log.splitlines()[-25:]))
        if time.monotonic() > deadline:
            awaited = f"the {what}'s step {len(seen) + 1}" if markers else f"the {what}'s first step"
            raise DeployError(f"Timed out after {time.monotonic() - started:.0f} s waiting for {awaited}; "
                              "see `labkit logs`, then `labkit down`.")
        time.sleep(poll)


def module_failure(log: str) -> str | None:
    """"cloud-init's module runcmd failed", if the console says a module failed."""
    match = MODULE_FAILED_RE.search(log)
    return f"cloud-init's module {match.group(1) or match.group(2)} failed" if match else None


def before_failure(log: str, lines: int = 25) -> list[str]:
    """The console's lines up to the first FAILED marker (or failed module): the failing step's own output.

    cloud-init prints its tables of keys and fingerprints after the
    scripts; those lines say nothing about why a step failed.
    """
    every = log.splitlines()
    end = next((i + 1 for i, line in enumerate(every) if FAILED_RE.search(line) or MODULE_FAILED_RE.search(line)),
               len(every))
    useful = [line for line in every[:end] if not NOISE_RE.search(line)]
    return useful[-lines:]


HOST_KEYS_RE = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----\s*\n(.*?)\n[^\n]*-----END SSH HOST KEY KEYS-----", re.S)


def host_keys(log: str) -> list[str]:
    """The VM's SSH host keys ("type base64"), from the block cloud-init prints to the console at boot."""
    match = HOST_KEYS_RE.search(log)
    if match is None:
        return []
    keys = []
    for line in match.group(1).splitlines():
        found = re.search(r"((?:ssh|ecdsa)-\S+) (AAAA[0-9A-Za-z+/=]+)", line)
        if found:
            keys.append(f"{found.group(1)} {found.group(2)}")
    return keys


def wait_for_host_keys(read: Callable[[], str], timeout: float = 60.0, poll: float = 1.0) -> list[str]:
    """The host keys, once cloud-init prints them: after the user's scripts (its keys-to-console module
    runs late in its final stage), so a moment after the last step's marker. [] if it never does."""
    keys: list[str] = []

    def printed() -> bool:
        log = read()
        keys[:] = host_keys(log)
        return bool(keys) or FINISHED_RE.search(log) is not None

    wait_until(printed, timeout, poll)
    return keys
