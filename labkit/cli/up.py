import click

from ._options import name_option


@click.command("up")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16), help="Celery workers to start.")
@click.option("--backend", default=None, help="Where to deploy (env: LABKIT_BACKEND; default local).")
@name_option
def command(workers: int, backend: str | None, name: str) -> None:
    """Start the production server and wait until it answers."""
    import labkit

    lab = labkit.deploy(backend, name=name, workers=workers)
    status = lab.status()
    click.echo(f"{lab.name} is up at {lab.url} with {status.workers} worker(s).")
