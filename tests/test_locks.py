"""One labkit command at a time changes a deployment: its lock, and who may take it.

The lock file is never removed while others may wait on it, it is private to
its user (as are LABKIT_HOME and deployments/), a wait has a limit and names
who holds the lock, and a command that waited checks that the deployment it
waited for is still the one there.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import labkit
from labkit._state import RunDir
from labkit.infra import procs as _procs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def taken_by_someone(path: Path) -> bool:
    """Whether an exclusive lock on ``path`` is held by somebody else (a separate open file)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_removing_a_deployment_keeps_its_lock(tmp_path):
    """deploy() over a crash and destroy() remove the run directory while they hold the lock:
    a command that opens the lock meanwhile must still wait for them, not lock a new file."""
    run = RunDir(tmp_path / "deployments", "lab")
    with run.locked():
        run.create()
        run.write({"id": "a"})
        run.remove()
        assert not run.exists()
        assert taken_by_someone(run.lock_file)
    assert not taken_by_someone(run.lock_file)


def test_home_deployments_and_locks_are_private(settings, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # as labkit left it before
    empty = labkit.Settings(home=home, model_dir=tmp_path / "no-model", progress="off")
    with pytest.raises(labkit.PrerequisiteMissing):
        labkit.deploy("local", name="lab", settings=empty)  # takes the lock, then finds no model
    deployments = home / "deployments"
    assert (mode(home), mode(deployments), mode(deployments / "lab.lock")) == (0o700, 0o700, 0o600)
    # A lock file an older labkit made world-readable is made private when next taken.
    os.chmod(deployments / "lab.lock", 0o644)
    with RunDir(deployments, "lab").locked():
        pass
    assert mode(deployments / "lab.lock") == 0o600
    # A home that does not exist yet is made private, with the folders above it.
    fresh = labkit.Settings(home=tmp_path / "new" / "state" / "labkit", model_dir=tmp_path / "no-model",
                            progress="off")
    with pytest.raises(labkit.PrerequisiteMissing):
        labkit.deploy("local", name="lab", settings=fresh)
    assert {mode(p) for p in (tmp_path / "new", fresh.home, fresh.deployments_dir)} == {0o700}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to try the lock as another user")
def test_another_user_cannot_take_a_deployments_lock():
    """Before, any user could flock the 0644 lock file in the 0755 folders, and make labkit wait forever."""
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)  # everyone may pass through, as through a home directory
        run = RunDir(Path(top) / "home" / "deployments", "lab")
        with run.locked():
            pass
        nobody = pwd.getpwnam("nobody")
        probe = textwrap.dedent(f"""
            import fcntl, os, sys
            os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid})
            try:
                fd = os.open({str(run.lock_file)!r}, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except PermissionError:
                sys.exit(3)
            sys.exit(0)
        """)
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
        assert done.returncode == 3, f"user nobody took the lock: exit {done.returncode} {done.stderr}"


HOLD = """
import sys, time
from pathlib import Path
from labkit._state import RunDir
with RunDir(Path(sys.argv[1]), "lab").locked("scaling"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_wait_for_the_lock_ends_and_names_who_holds_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "deployments")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        heard = []
        started = time.monotonic()
        with pytest.raises(labkit.DeployError) as busy:
            with RunDir(tmp_path / "deployments", "lab").locked(timeout=1.5, waiting=heard.append):
                pytest.fail("took a lock another process holds")
        waited = time.monotonic() - started
        assert 1.5 <= waited < 5
        assert type(busy.value) is labkit.DeploymentBusy
        message = str(busy.value)
        assert message.startswith(f"Another labkit command is scaling 'lab' (pid {holder.pid}, for ")
        assert message.endswith(f"wait for it to finish, or stop it (`kill {holder.pid}`), then retry.")
        # Whoever waits hears, once, what it waits for.
        assert heard == [f"scaling 'lab' (pid {holder.pid})"]
        run = RunDir(tmp_path / "deployments", "lab")
        assert {k: v for k, v in run.holder().items() if k != "since"} == {"pid": holder.pid, "doing": "scaling"}
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert run.holder() is None
    with RunDir(tmp_path / "deployments", "lab").locked(timeout=1):
        pass  # the holder died: its lock went with it


def test_a_command_that_waited_acts_only_on_the_deployment_it_waited_for(settings, monkeypatch):
    """`labkit scale 3` that waited while 'lab' was taken down and started again must not scale the new one."""
    from labkit.backends.local.backend import LocalBackend

    scaled = []
    monkeypatch.setattr(LocalBackend, "scale", lambda self, run, state, workers: scaled.append(workers) or state)
    run = RunDir(settings.deployments_dir, "lab")
    with run.locked():
        run.create()
        run.write({"id": "the-new-one", "name": "lab", "backend": "local", "url": "http://127.0.0.1:9",
                   "processes": []})
    older = labkit.Deployment(run, {**run.read(), "id": "the-old-one"}, settings)
    with pytest.raises(labkit.NotDeployed, match=r"another one of that name started since: .*labkit.attach\('lab'\)"):
        older.scale(3)
    assert scaled == []
    current = labkit.attach("lab", settings=settings)
    current.scale(3)
    assert scaled == [3]
    run.remove()
    with pytest.raises(labkit.NotDeployed, match="was taken down"):
        current.scale(2)


class SlowToStart:
    """The local backend, with a pause after the lock is taken and before anything is recorded."""

    def __init__(self, pause: float):
        from labkit.backends.local.backend import LocalBackend

        self.inner = LocalBackend()
        self.pause = pause
        self.name, self.engines = self.inner.name, self.inner.engines

    def plan_steps(self, workers):
        return self.inner.plan_steps(workers)

    def up(self, run, settings, workers, progress):
        time.sleep(self.pause)
        return self.inner.up(run, settings, workers, progress)

    def down(self, run, state):
        return self.inner.down(run, state)


@pytest.mark.slow
def test_down_during_the_first_moments_of_an_up_takes_down_what_it_started(settings, monkeypatch, capsys):
    """Before, `labkit down` while `up` held the lock and had written nothing said "Nothing to stop"."""
    from labkit.cli import main as cli

    for variable, value in (("LABKIT_HOME", settings.home), ("LABKIT_MODEL_DIR", settings.model_dir),
                            ("LABKIT_DATA_DIR", settings.data_dir)):
        monkeypatch.setenv(variable, str(value))
    run = RunDir(settings.deployments_dir, "early")
    started: dict = {}

    def up() -> None:
        try:
            started["lab"] = labkit.deploy(SlowToStart(2.0), name="early", settings=settings, progress="off")
        except BaseException as exc:  # noqa: BLE001 - reported below
            started["error"] = exc

    thread = threading.Thread(target=up)
    thread.start()
    try:
        assert _procs.wait_until(lambda: run.lock_file.exists() and taken_by_someone(run.lock_file), 10, 0.02)
        assert not run.exists()  # nothing recorded yet
        assert cli(["down", "--name", "early"]) == 0
        out = capsys.readouterr().out
        assert "Nothing to stop" not in out and "early is down." in out
        assert "Waiting for another labkit command, which is deploying 'early' (pid " in out
        thread.join(timeout=120)
        assert "error" not in started, started.get("error")
        lab = started["lab"]
        procs = [_procs.Proc.from_dict(p) for p in lab._state["processes"]]
        assert procs and [p.role for p in procs if p.alive()] == []
        assert not run.exists()
    finally:
        thread.join(timeout=120)
        if run.exists():
            labkit.attach("early", settings=settings).destroy()
