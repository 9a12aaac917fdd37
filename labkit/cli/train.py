from pathlib import Path

import click


def _hidden(ctx, param, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("give layer sizes like 12,8") from None


@click.command("train")
@click.option("--epochs", default=150, show_default=True)
@click.option("--hidden", default="12,8", show_default=True, callback=_hidden, help="Hidden layer sizes.")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", default=None, help="Folder for the model (env: LABKIT_MODEL_DIR).")
def command(epochs: int, hidden: tuple[int, ...], seed: int, out: str | None) -> None:
    """Train the diabetes model and save it where deployments find it."""
    import labkit

    click.echo(f"Training {epochs} epochs, hidden layers {hidden}, seed {seed} ...")
    meta = labkit.train(epochs=epochs, hidden=hidden, seed=seed, out=Path(out) if out else None)
    click.echo(f"Model {meta['version']}: held-out accuracy {meta['accuracy']:.1%}, saved in {meta['out']}.")
