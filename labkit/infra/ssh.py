"""Run commands on a VM over SSH, with paramiko.

    >>> with SSH("203.0.113.7") as vm:            # user ubuntu, ~/.ssh/id_ed25519
    ...     vm.wait_until_reachable(300)           # a new VM's sshd comes up late
    ...     vm.run("systemctl is-active labkit-web.service", check=True).stdout

Host keys are trusted on first use and remembered in a known_hosts file of
labkit's own (``$LABKIT_HOME/known_hosts``), in OpenSSH's format; a host whose
key has changed since is refused. Every failure is an ``SSHError`` whose
message says what to do. Nothing here logs or prints a private key.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .._config import HOME, Settings
from .._errors import ConfigError, SSHError
from .hosts import Result

log = logging.getLogger(__name__)
# paramiko's connection threads log each failed try with a traceback; while a VM boots
# that is noise, so it goes to a logger of ours that prints nothing unless the
# application configures logging.
PARAMIKO_LOG = f"{__name__}.paramiko"
logging.getLogger(PARAMIKO_LOG).addHandler(logging.NullHandler())

DEFAULT_USER = "ubuntu"
DEFAULT_KEYS = ("id_ed25519", "id_rsa")
# Failures that mean "not up yet": wait_until_reachable() tries again after them.
RETRYABLE = {"refused", "timeout", "unreachable", "protocol"}


def _paramiko():
    try:
        import paramiko
    except ImportError:
        raise ConfigError(
            "SSH needs the paramiko package, which is not installed: run `pip install paramiko`, then retry."
        ) from None
    return paramiko


def default_key_file() -> Path:
    candidates = [Path.home() / ".ssh" / name for name in DEFAULT_KEYS]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        "No SSH private key found (" + ", ".join(str(p) for p in candidates) + "): create one with "
        "`ssh-keygen -t ed25519`, or pass key_file= the private key whose public half the VM has."
    )


def default_known_hosts() -> Path:
    home = os.environ.get(HOME)
    return (Path(home).expanduser() if home else Settings().home) / "known_hosts"


class SSH:
    """One SSH connection to ``user@host``, opened on first use and kept for the next commands."""

    def __init__(self, host: str, user: str = DEFAULT_USER, key_file: str | Path | None = None, port: int = 22,
                 known_hosts: str | Path | None = None, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.key_file = Path(key_file).expanduser() if key_file else default_key_file()
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else default_known_hosts()
        self.connect_timeout = connect_timeout
        self._client: Any = None  # a paramiko.SSHClient once connected (paramiko is imported late)
        self._pkey = None

    def __repr__(self) -> str:
        return f"SSH({self.target!r}, key_file={str(self.key_file)!r})"

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def host_key_name(self) -> str:
        """The host's name in known_hosts, as OpenSSH writes it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # -- connection -------------------------------------------------------

    def __enter__(self) -> "SSH":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (its paramiko thread ends with it); a later run() opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def connect(self, timeout: float | None = None) -> None:
        """Open the connection now, if it is not open (run() does this by itself)."""
        if self.connected():
            return
        self.close()
        paramiko = _paramiko()
        timeout = self.connect_timeout if timeout is None else timeout
        client = paramiko.SSHClient()
        client.set_log_channel(PARAMIKO_LOG)
        # Only labkit's own known_hosts: the VMs come and go, the user's ~/.ssh stays as it is.
        if self.known_hosts.is_file():
            try:
                client.get_host_keys().load(str(self.known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigError(
                    f"{self.known_hosts} cannot be read ({exc}): fix or delete that file, then retry."
                ) from None
        client.set_missing_host_key_policy(_RememberNewHosts(self.known_hosts))
        try:
            client.connect(
                self.host, port=self.port, username=self.user, pkey=self._key(), timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                allow_agent=False, look_for_keys=False,
            )
        except Exception as exc:
            client.close()
            error = self._explain(exc, timeout)
            if error is None:
                raise
            raise error from exc
        self._client = client

    def wait_until_reachable(self, timeout: float = 300.0, interval: float = 2.0) -> None:
        """Connect, trying again while the host refuses or does not answer (its sshd starts late).

        A changed host key or a refused key is not going to get better, and is raised at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                self.connect(timeout=max(1.0, min(self.connect_timeout, remaining)))
                return
            except SSHError as exc:
                if exc.reason not in RETRYABLE:
                    raise
                last = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SSHError(
                    f"{self.target} did not accept an SSH connection within {timeout:g} s; the last try said: {last}",
                    reason=last.reason,
                ) from last
            time.sleep(min(interval, remaining))

    # -- commands ---------------------------------------------------------

    def run(self, command: str, timeout: float = 60, check: bool = False) -> Result:
        """Run ``command`` with the remote user's shell; wait at most ``timeout`` seconds in all.

        On timeout the channel is closed and SSHError raised; the remote command itself
        is not stopped, so prefix it with ``timeout N`` where it must not outlive the call.
        """
        start = time.monotonic()
        deadline = start + timeout
        self.connect(timeout=max(0.5, min(self.connect_timeout, timeout)))
        log.debug("ssh %s: %s", self.target, command)
        paramiko = _paramiko()
        try:
            channel = self._client.get_transport().open_session(timeout=max(0.5, deadline - time.monotonic()))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise SSHError(
                f"{self.target} closed the connection when asked for a new session ({exc}); retry.",
                reason="protocol",
            ) from exc
        # exec_command() waits for the server's answer without a time limit: a timer
        # closes the channel at the deadline, which ends that wait and the loop below.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            channel.close()

        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        watchdog.daemon = True
        watchdog.start()
        out, err = bytearray(), bytearray()
        try:
            try:
                channel.exec_command(command)
                while True:
                    if channel.recv_ready():
                        out += channel.recv(65536)
                    elif channel.recv_stderr_ready():
                        err += channel.recv_stderr(65536)
                    elif expired.is_set() or time.monotonic() >= deadline:
                        expired.set()
                        break
                    elif channel.exit_status_ready() and (channel.eof_received or channel.closed):
                        break
                    else:
                        select.select([channel], [], [], min(0.2, max(0.0, deadline - time.monotonic())))
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if not expired.is_set():
                    raise SSHError(f"{self.target}: running `{_short(command)}` failed ({exc}); retry.",
                                   reason="protocol") from exc
        finally:
            watchdog.cancel()
            watchdog.join()
            channel.close()
        seconds = time.monotonic() - start
        if expired.is_set():
            raise SSHError(
                f"`{_short(command)}` on {self.target} did not finish within {timeout:g} s: "
                "pass a longer timeout=, or look on the VM for what it waits on.",
                reason="command-timeout",
            )
        result = Result(channel.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace"),
                        seconds)
        if check and result.exit_code != 0:
            raise SSHError(
                f"`{_short(command)}` on {self.target} failed with exit code {result.exit_code}."
                + (" Its stderr ends with:\n" + _last_lines(result.stderr) + "\n" if result.stderr.strip() else " ")
                + "Fix what it reports and retry; run(..., check=False) returns the whole output.",
                exit_code=result.exit_code, reason="exit",
            )
        return result

    # -- internals --------------------------------------------------------

    def _key(self):
        if self._pkey is None:
            paramiko = _paramiko()
            try:
                self._pkey = paramiko.PKey.from_path(self.key_file)
            except FileNotFoundError:
                raise ConfigError(
                    f"The SSH key {self.key_file} does not exist: create it with `ssh-keygen -t ed25519 -f "
                    f"{self.key_file}`, or pass key_file= the private key whose public half the VM has."
                ) from None
            except paramiko.PasswordRequiredException:
                raise ConfigError(
                    f"The SSH key {self.key_file} is protected by a passphrase, which labkit cannot type: "
                    "create a key without one (`ssh-keygen -t ed25519 -N ''`) for the lab and use that."
                ) from None
            except (paramiko.SSHException, ValueError, OSError) as exc:
                raise ConfigError(
                    f"{self.key_file} is not a private key paramiko can read ({type(exc).__name__}): "
                    "pass key_file= the private key (not the .pub file), in OpenSSH format."
                ) from None
        return self._pkey

    def _explain(self, exc: BaseException, timeout: float) -> SSHError | None:
        """The SSHError that tells a student what to do about ``exc``, or None to let it through."""
        paramiko = _paramiko()
        to = f"SSH to {self.target}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return SSHError(
                f"{to} refused: the host key of {self.host_key_name} has CHANGED since it was recorded in "
                f"{self.known_hosts}. Someone may be intercepting the connection - but if the VM was rebuilt "
                f"(a new VM at the same address) that is expected: delete its line, e.g. with "
                f"`ssh-keygen -R '{self.host_key_name}' -f {self.known_hosts}`, and retry.",
                reason="host-key",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return SSHError(
                f"{to}: authentication failed with the key {self.key_file}. The key pair on the cloud must match "
                f"the local key: create the VM with {self.key_file}.pub (LABKIT_OS_PUBLIC_KEY), or pass key_file= "
                f"the private key of the VM's key pair, and log in as the image's user (`ubuntu`).",
                reason="auth",
            )
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            if all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values()):
                return SSHError(
                    f"{to}: connection refused. The VM may still be booting (its sshd starts late): wait a minute "
                    f"and retry (wait_until_reachable() does), or check that its security group allows TCP port "
                    f"{self.port}.",
                    reason="refused",
                )
            return SSHError(
                f"{to}: no route to host ({exc}). Check the address (the VM's floating IP) and your network, "
                "then retry.",
                reason="unreachable",
            )
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return SSHError(
                f"{to}: no answer within {timeout:g} s. Check the address (the VM's floating IP) and that its "
                f"security group allows TCP port {self.port}, then retry.",
                reason="timeout",
            )
        if isinstance(exc, socket.gaierror):
            return SSHError(f"{to}: the name {self.host!r} does not resolve ({exc}). Check the address, then retry.",
                            reason="unreachable")
        if isinstance(exc, (paramiko.SSHException, EOFError, ConnectionError)):
            # Banner timeouts, resets: the port answers but sshd is not (yet) talking.
            return SSHError(
                f"{to}: the port answers, but no SSH handshake completed ({exc or type(exc).__name__}). "
                "The VM may still be booting: wait a minute and retry.",
                reason="protocol",
            )
        if isinstance(exc, OSError):
            return SSHError(f"{to}: {exc}. Check the address and your network, then retry.", reason="unreachable")
        return None


def _short(command: str, limit: int = 120) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _last_lines(text: str, lines: int = 10) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def _remember_host_key(path: Path, name: str, key) -> None:
    from paramiko.hostkeys import HostKeyEntry

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as file:
        file.write(HostKeyEntry([name], key).to_line())
    os.chmod(path, 0o600)


def _fingerprint(key) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _RememberNewHosts:
    """paramiko's missing-host-key policy: trust a host seen for the first time, and write its key down."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client, hostname: str, key) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        _remember_host_key(self.path, hostname, key)
        log.info("SSH: first connection to %s, its %s host key %s is now trusted (recorded in %s)",
                 hostname, key.get_name(), _fingerprint(key), self.path)
