import click

from ._options import name_option


@click.command("down")
@name_option
def command(name: str) -> None:
    """Stop everything the deployment started."""
    import labkit

    try:
        lab = labkit.attach(name)
    except labkit.NotDeployed:
        click.echo(f"Nothing to stop: no deployment called {name!r}.")
        return
    lab.destroy()
    click.echo(f"{name} is down.")
