import click

from ._options import name_option


@click.command("scale")
@click.argument("workers", type=click.IntRange(1, 16))
@name_option
def command(workers: int, name: str) -> None:
    """Run exactly WORKERS Celery workers."""
    import labkit

    seconds = labkit.attach(name).scale(workers)
    click.echo(f"{workers} worker(s) answering after {seconds:.1f}s.")
