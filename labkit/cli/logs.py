import click

from ._options import name_option


@click.command("logs")
@click.option("--lines", "-n", default=40, show_default=True, help="Lines per log.")
@name_option
def command(lines: int, name: str) -> None:
    """Print the end of every process's log."""
    import labkit

    click.echo(labkit.attach(name).logs(lines))
