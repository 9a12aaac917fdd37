"""labkit's SSH runner against a real OpenSSH server on the loopback.

The server is Debian's sshd, started in the foreground with a config, host key
and authorized_keys of its own in a temporary folder; it lets root in with
the test's key only. `scripts/test.sh` installs openssh-server where it is missing.
"""

from __future__ import annotations

import getpass
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import labkit
from labkit.infra import procs
from labkit.infra.ssh import SSH

SSHD = Path("/usr/sbin/sshd")

pytestmark = pytest.mark.skipif(
    not SSHD.is_file() or shutil.which("ssh-keygen") is None,
    reason="needs OpenSSH's sshd and ssh-keygen: `apt-get install openssh-server` (scripts/test.sh does)",
)


class Sshd:
    """A private sshd: its own folder, host key, client key and port."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or procs.free_port()
        self.proc: procs.Proc | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.client_key = _keygen(folder / "client_key")
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        self.new_host_key()

    def new_host_key(self) -> None:
        for path in (self.folder / "host_key", self.folder / "host_key.pub"):
            path.unlink(missing_ok=True)
        _keygen(self.folder / "host_key")
        (self.folder / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {self.folder / 'host_key'}\n"
            "PidFile none\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
        )

    @property
    def host_public_key(self) -> str:
        return (self.folder / "host_key.pub").read_text().split()[1]

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        cmd = [str(SSHD), "-D", "-e", "-f", str(self.folder / "sshd_config")]
        self.proc = procs.spawn("sshd", cmd, env={"PATH": os.environ["PATH"]}, log_path=self.folder / "sshd.log")
        if not procs.wait_until(lambda: procs.port_in_use(self.port) or not self.proc.alive(), 10, 0.05) \
                or not self.proc.alive():
            raise RuntimeError(f"sshd did not start:\n{procs.tail(self.folder / 'sshd.log')}")

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, timeout=5)
            self.proc = None

    def client(self, tmp_path: Path, **kwargs) -> SSH:
        options = dict(user=getpass.getuser(), key_file=self.client_key, port=self.port,
                       known_hosts=tmp_path / "known_hosts", connect_timeout=5)
        return SSH("127.0.0.1", **{**options, **kwargs})


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_sshd(tmp_path):
    """A server of the test's own, for tests that stop, restart or delay it."""
    server = Sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()


def _paramiko_threads() -> list[threading.Thread]:
    import paramiko

    return [t for t in threading.enumerate() if isinstance(t, paramiko.Transport) and t.is_alive()]


def test_run_returns_stdout_stderr_and_exit_code(sshd, tmp_path):
    with sshd.client(tmp_path) as ssh:
        result = ssh.run("echo out; echo err >&2; exit 3")
        again = ssh.run("printf 'héllo\\n'")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert 0 <= result.seconds < 5
    assert (again.exit_code, again.stdout, again.stderr) == (0, "héllo\n", "")


def test_check_raises_with_exit_code_and_last_lines_of_stderr(sshd, tmp_path):
    with sshd.client(tmp_path) as ssh:
        with pytest.raises(labkit.SSHError) as caught:
            ssh.run("for i in $(seq 1 30); do echo line$i >&2; done; exit 7", check=True)
        assert ssh.run("true", check=True).exit_code == 0
    assert caught.value.exit_code == 7
    message = str(caught.value)
    assert "exit code 7" in message and "line30" in message and "line1\n" not in message


def test_command_past_its_timeout_raises_and_leaves_no_thread(sshd, tmp_path):
    before = set(threading.enumerate())
    ssh = sshd.client(tmp_path)
    start = time.monotonic()
    with pytest.raises(labkit.SSHError, match="did not finish within 1 s"):
        ssh.run("sleep 10; echo late", timeout=1)
    assert time.monotonic() - start < 1 + 5
    # The connection is still good for the next command.
    assert ssh.run("echo still here", timeout=5).stdout == "still here\n"
    ssh.close()
    # Seen failing once in a quick loop, with nothing else running: say which threads stayed.
    assert procs.wait_until(lambda: not _paramiko_threads() and set(threading.enumerate()) <= before, 10), (
        f"threads left: {sorted(t.name for t in set(threading.enumerate()) - before)}")


def test_host_key_is_recorded_on_first_use_and_used_after(sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    with sshd.client(tmp_path) as ssh:
        ssh.run("true", check=True)
    recorded = known_hosts.read_text()
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    assert recorded.split() == [f"[127.0.0.1]:{sshd.port}", "ssh-ed25519", sshd.host_public_key]
    with sshd.client(tmp_path) as ssh:
        ssh.run("true", check=True)
    assert known_hosts.read_text() == recorded


def test_changed_host_key_is_refused_with_how_to_forget_it(own_sshd, tmp_path):
    own_sshd.start()
    with own_sshd.client(tmp_path) as ssh:
        ssh.run("true", check=True)
    own_sshd.stop()
    own_sshd.new_host_key()  # the VM was rebuilt: same address, new host key
    own_sshd.start()
    with own_sshd.client(tmp_path) as ssh, pytest.raises(labkit.SSHError) as caught:
        ssh.run("true")
    message = str(caught.value)
    assert "CHANGED" in message and "delete its line" in message
    assert f"ssh-keygen -R '[127.0.0.1]:{own_sshd.port}' -f {tmp_path / 'known_hosts'}" in message
    assert caught.value.reason == "host-key"
    # Doing what the message says lets the rebuilt VM in, and records its new key.
    subprocess.run(["ssh-keygen", "-R", f"[127.0.0.1]:{own_sshd.port}", "-f", str(tmp_path / "known_hosts")],
                   check=True, capture_output=True)
    with own_sshd.client(tmp_path) as ssh:
        assert ssh.run("echo in").stdout == "in\n"
    assert own_sshd.host_public_key in (tmp_path / "known_hosts").read_text()


def test_wrong_client_key_says_the_key_pair_must_match(sshd, tmp_path):
    other_key = _keygen(tmp_path / "other_key")
    with sshd.client(tmp_path, key_file=other_key) as ssh, pytest.raises(labkit.SSHError) as caught:
        ssh.run("true")
    assert "authentication failed" in str(caught.value) and "must match the local key" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


def test_closed_port_says_connection_refused(sshd, tmp_path):
    with sshd.client(tmp_path, port=procs.free_port()) as ssh, pytest.raises(labkit.SSHError) as caught:
        ssh.run("true")
    assert "connection refused" in str(caught.value) and "booting" in str(caught.value)


def test_no_answer_says_check_the_address(tmp_path, sshd):
    # A listening socket whose accept queue is full drops new SYNs, as a firewall would.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        queued = []
        try:
            for _ in range(5):
                sock = socket.socket()
                queued.append(sock)
                sock.settimeout(0.3)
                try:
                    sock.connect(silent.getsockname())
                except TimeoutError:
                    break
            else:
                pytest.skip("could not fill the accept queue of a loopback socket")
            ssh = sshd.client(tmp_path, port=silent.getsockname()[1], connect_timeout=1)
            start = time.monotonic()
            with ssh, pytest.raises(labkit.SSHError) as caught:
                ssh.run("true")
            assert time.monotonic() - start < 1 + 5
        finally:
            for sock in queued:
                sock.close()
    assert "no answer within 1 s" in str(caught.value) and "security group" in str(caught.value)
    assert caught.value.reason == "timeout"


def test_wait_until_reachable_waits_for_a_late_sshd(own_sshd, tmp_path):
    late = threading.Timer(2.0, own_sshd.start)
    late.start()
    try:
        with own_sshd.client(tmp_path) as ssh:
            start = time.monotonic()
            ssh.wait_until_reachable(timeout=20, interval=0.5)
            assert 1.5 < time.monotonic() - start < 10
            assert ssh.run("echo up").stdout == "up\n"
    finally:
        late.join()


def test_wait_until_reachable_gives_up_after_its_timeout(tmp_path, sshd):
    with sshd.client(tmp_path, port=procs.free_port()) as ssh, pytest.raises(labkit.SSHError) as caught:
        ssh.wait_until_reachable(timeout=1.5, interval=0.5)
    assert "within 1.5 s" in str(caught.value) and "connection refused" in str(caught.value)


def test_missing_key_file_is_a_config_error(tmp_path):
    with pytest.raises(labkit.ConfigError, match="does not exist"):
        SSH("127.0.0.1", key_file=tmp_path / "nope", known_hosts=tmp_path / "known_hosts").run("true")


def test_known_hosts_defaults_to_labkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    key = _keygen(tmp_path / "key")
    assert SSH("203.0.113.7", key_file=key).known_hosts == tmp_path / "home" / "known_hosts"


def test_missing_paramiko_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "paramiko", None)
    key = _keygen(tmp_path / "key")
    with pytest.raises(labkit.ConfigError, match="pip install paramiko"):
        SSH("127.0.0.1", key_file=key, known_hosts=tmp_path / "known_hosts").run("true")
