import click

from ._options import name_option
from .train import _hidden


@click.group("cicd")
def command() -> None:
    """Retrain, push, gate and roll out the model through git hooks."""


@command.command("init")
@click.option("--min-accuracy", default=None, type=click.FloatRange(0, 1),
              help="The gate refuses models below this held-out accuracy (default 0.70). Given again, it "
                   "changes the threshold of the pipeline set up already; left out, that one keeps its own.")
@name_option
def init(min_accuracy: float | None, name: str) -> None:
    """Set up production's bare repository with its hooks, and the development repository."""
    import labkit

    pipeline = labkit.cicd.init(name=name, min_accuracy=min_accuracy)
    sides = pipeline.sides
    click.echo(f"Production repository: {pipeline.config.repo} on {sides.production.name} "
               f"(serving {sides.pointer})")
    click.echo(f"Development repository: {pipeline.development} on {sides.development.name} (remote 'production')")
    for hook in pipeline.hooks().values():
        click.echo(f"\n--- {hook.path} ---\n{hook.text.rstrip()}")


@command.command("push")
@click.option("--epochs", default=150, show_default=True)
@click.option("--hidden", default="12,8", show_default=True, callback=_hidden, help="Hidden layer sizes.")
@click.option("--seed", default=7, show_default=True)
@click.option("--message", "-m", default=None, help="Commit message (default: the training parameters).")
@click.option("--branch", default=None, help="Push to this branch instead (not deployed).")
@name_option
def push(epochs: int, hidden: tuple[int, ...], seed: int, message: str | None, branch: str | None,
         name: str) -> None:
    """Retrain, commit the model and push it to production (exit 1 if the gate refuses it)."""
    import labkit

    click.echo(f"Training {epochs} epochs, hidden layers {hidden}, seed {seed} ...")
    result = labkit.cicd.attach(name).push(epochs=epochs, hidden=hidden, seed=seed, message=message, branch=branch)
    click.echo(f"{result.output}\n\n{result}")


@command.command("history")
@name_option
def history(name: str) -> None:
    """Every deploy and rollback: release, version, accuracy, time, commit, who."""
    import labkit

    click.echo(labkit.cicd.attach(name).history_frame().to_string(index=False))


@command.command("rollback")
@name_option
def rollback(name: str) -> None:
    """Serve the release before the current one again, without dropping requests."""
    import labkit

    entry = labkit.cicd.attach(name).rollback()
    click.echo(f"Release {entry['release']} ({entry['version']}) is live again, served by "
               f"{entry['workers_confirmed']} worker(s).")
