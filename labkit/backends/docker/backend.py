"""The docker backend (Task 2): RabbitMQ, the web server and N workers as Compose containers.

labkit stages a compose project per deployment in its run directory, from
the same release archive a VM receives (``cloudinit.release``: the server's
code with its Dockerfile and compose.yaml, the pinned requirements and the
trained model, which the image bakes in) plus an ``.env`` (0600) with a
broker user and password drawn for this deployment. Then ``docker compose``
builds the image, starts the stack and scales the ``worker`` service; the
commands themselves live in ``labkit.infra.compose``.

The web port is published on the loopback (``LABKIT_HOST``) only; the
broker is reachable on the project's own network and nowhere else.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

from production_server import archives, data
from production_server.contract import ENGINES

from ..._config import Settings
from ..._errors import DeployError, PrerequisiteMissing, ScaleError
from ..._state import RunDir
from ...infra import cloudinit, health, procs
from ...infra.compose import Compose, env_text, env_values, project_name
from ...infra.rabbitmq import new_account
from ..base import ProcessRow, State, new_state, url_of
from ...notebook.progress import Progress

BUILD_TIMEOUT = 1800.0  # the first build downloads TensorFlow
DOWN_TIMEOUT = 120.0


def stage(dest: Path, release: cloudinit.Release, values: dict[str, str], data_dir: Path | None = None) -> None:
    """Write the compose project: the unpacked release, the data set in data/ when this host has it
    (the image's build then downloads nothing), and its .env (0600, it holds the password)."""
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(release.b64)), mode="r:gz") as tar:
        archives.extract(tar, dest)
    (dest / "data").mkdir(exist_ok=True)
    try:
        shutil.copy2(data.locate(download=False, folder=data_dir), dest / "data" / data.FILENAME)
    except data.DataError:
        pass  # the build fetches it from the mirror
    fd = os.open(dest / ".env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(env_text(values))


class DockerBackend:
    name = "docker"
    engines = ENGINES  # the image installs both runtimes; MODEL_ENGINE in the .env picks one

    def plan_steps(self, workers: int) -> list[str]:
        return [
            "check Docker and Compose",
            "stage the compose project",
            "build the server's image",
            f"start RabbitMQ, the web server and {workers} worker container{'s' if workers != 1 else ''}",
            "wait for the workers to answer",
        ]

    def compose(self, state: State) -> Compose:
        project = state["compose"]
        secret = (project["password"],) if project.get("password") else ()
        return Compose(project["name"], project["file"], project["env_file"], secrets=secret)

    # -- up -----------------------------------------------------------------
    def up(self, run: RunDir, settings: Settings, workers: int, progress: Progress) -> State:
        titles = self.plan_steps(workers)
        directory = run.path / "compose"
        with progress.step(titles[0]):
            if not (Path(settings.model_dir) / "metadata.json").is_file():
                raise PrerequisiteMissing(
                    f"No trained model in {settings.model_dir}: run `labkit train` first "
                    "(or set LABKIT_MODEL_DIR to a folder that holds model.keras and metadata.json)."
                )
            user, password = new_account()
            state = new_state(
                run, self.name,
                model_dir=str(settings.model_dir),
                compose={
                    "name": project_name(run.name),
                    "file": str(directory / "production_server" / "compose.yaml"),
                    "env_file": str(directory / ".env"),
                    "password": password,
                },
                workers=workers,
                engine=settings.engine,
            )
            compose = self.compose(state)
            compose.check()

        with progress.step(titles[1]):
            run.create()
            port = procs.free_port(settings.port, settings.host)
            state.update({"host": settings.host, "port": port, "url": f"http://{settings.host}:{port}"})
            release = cloudinit.release(settings.model_dir)
            stage(directory, release, env_values(
                deployment=run.name, broker_user=user, broker_password=password,
                model_version=release.model_version, web_bind=settings.host, web_port=port,
                predict_timeout=settings.predict_timeout, chart_version=cloudinit.CHART_VERSION,
                chart_sha256=hashlib.sha256(cloudinit.CHART_FILE.read_bytes()).hexdigest(),
                model_engine=str(state["engine"]),
            ), data_dir=settings.data_dir)
            run.write(state)  # before anything starts: a crash now still leaves a record to clean up

        with progress.step(titles[2]):
            compose.build(BUILD_TIMEOUT)

        with progress.step(titles[3]):
            compose.up(workers, settings.start_timeout)

        with progress.step(titles[4]):
            health.wait_or_raise(str(state["url"]), workers, settings.start_timeout, DeployError)
        return state

    # -- scale --------------------------------------------------------------
    def scale(self, run: RunDir, state: State, workers: int) -> State:
        try:
            self.compose(state).scale(workers, timeout=300)
        except DeployError as exc:
            raise ScaleError(str(exc)) from None
        state["workers"] = workers
        run.write(state)
        health.wait_or_raise(url_of(state), workers, 180, ScaleError)
        return state

    # -- look ---------------------------------------------------------------
    def processes(self, state: State) -> list[ProcessRow]:
        return [{"role": c.role, "id": c.name, "state": c.state, "alive": c.alive, "health": c.health or "-"}
                for c in self.compose(state).ps()]

    def logs(self, run: RunDir, state: State, lines: int) -> dict[str, str]:
        return self.compose(state).logs(lines)

    def running(self, state: State) -> bool:
        try:
            containers = self.compose(state).ps()
        except DeployError:
            return False
        return any(c.service == "web" and c.alive for c in containers)

    # -- down ---------------------------------------------------------------
    def down(self, run: RunDir, state: State) -> None:
        if "compose" not in state or not Path(state["compose"]["env_file"]).is_file():
            return  # nothing was staged, so nothing was started
        self.compose(state).down(DOWN_TIMEOUT)
