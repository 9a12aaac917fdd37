from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import click

from production_server.contract import ENGINES

from .. import _config
from ..backends import NAMES, Backend
from ._options import name_option

# What stops `labkit up` from outside: `kill` or a session ending (SIGTERM), its terminal closing
# (SIGHUP). Ctrl-C is a KeyboardInterrupt already.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(SystemExit):
    """A stop signal, as an exception: deploy() stops what it had started, then labkit exits as the signal would."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


@contextmanager
def _stop_signals_raise():
    """Within: SIGTERM and SIGHUP raise Stopped, so that deploy()'s clean-up runs (it does for any exception).

    Left to themselves they end the process at once, and the half-started
    stack (its own sessions: it gets no signal) runs on.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return

    def stop(signum, frame):
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)  # the clean-up that follows must not be cut short
        raise Stopped(signum)

    previous = {each: signal.signal(each, stop) for each in STOP_SIGNALS}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def _cloud_option(name: str, variable: str, help: str):
    return click.option(f"--{name}", envvar=variable, show_envvar=True, default=None,
                        help=f"{help} (openstack backend).")


@click.command("up")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16), help="Celery workers to start.")
# No click defaults for these two: labkit's own settings (environment, then the file 00-setup saves) decide.
@click.option("--backend", type=click.Choice(NAMES), envvar=_config.BACKEND, show_envvar=True, default=None,
              help="Where to deploy (default: your saved choice, else local).")
@click.option("--engine", type=click.Choice(ENGINES), envvar=_config.ENGINE, show_envvar=True, default=None,
              help="What the workers run the model with (onnx: ONNX Runtime, no TensorFlow; default keras).")
@_cloud_option("image", _config.OS_IMAGE, "Image name, e.g. 'Ubuntu 24.04'")
@_cloud_option("flavor", _config.OS_FLAVOR, "Flavor name")
@_cloud_option("network", _config.OS_NETWORK, "The project's network")
@_cloud_option("keypair", _config.OS_KEYPAIR, "Key pair name on the cloud")
@click.option("--template", envvar=_config.CLOUD_TEMPLATE, show_envvar=True, default=None,
              help="The VM: single-server (Task 1) or docker-server (Task 2) (openstack and machine backends).")
@name_option
@click.pass_context
def command(ctx: click.Context, workers: int, backend: str | None, engine: str | None, image, flavor, network,
            keypair, template, name: str) -> None:
    """Start the production server and wait until it answers.

    If it runs already, say so and leave it as it is (`labkit scale N` changes its workers).
    """
    import labkit

    from .._deploy import start_or_reuse

    from ..backends import TEMPLATED, get

    chosen = backend or labkit.Settings.from_env().backend
    cloud = {k: v for k, v in {"image": image, "flavor": flavor, "network": network, "keypair": keypair}.items() if v}
    # --template (or LABKIT_OS_TEMPLATE) names a VM: the backends without one run as they are.
    target: Backend = get(chosen, template=template if chosen in TEMPLATED else None, cloud=cloud)
    try:
        with _stop_signals_raise():
            lab = start_or_reuse(target, name=name, workers=workers, engine=engine,
                                 started_by={"command": "labkit up"})
    except Stopped as stopped:
        click.echo(f"labkit: stopped by {signal.Signals(stopped.signum).name} before {name} was up; what it had "
                   "started is stopped again. Run `labkit up` to start it.", err=True)
        raise
    if lab.reused:
        click.echo(f"{lab.running_note()}: {'; '.join(_not_applied(ctx, lab, workers, engine)) or 'reusing it'}.")
    status = lab.status()
    click.echo(f"{lab.name} is up at {lab.url} with {status.workers} worker(s), {status.engine} engine.")


def _not_applied(ctx: click.Context, lab, workers: int, engine: str | None) -> list[str]:
    """What the options asked of a deployment that runs already, and how to get it."""
    from click.core import ParameterSource

    notes = []
    if ctx.get_parameter_source("workers") != ParameterSource.DEFAULT and workers != lab.workers:
        notes.append(f"--workers {workers} was not applied: run `labkit scale {workers}`")
    served = lab.state.get("engine", "keras")
    if engine and engine != served:
        notes.append(f"--engine {engine} was not applied (it serves with {served}): run `labkit down`, "
                     f"then `labkit up --engine {engine}`")
    return notes
