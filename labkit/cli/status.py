import json

import click

from ._options import name_option


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (name, backend, url, workers, ...).")
@name_option
def command(as_json: bool, name: str) -> None:
    """Show whether the server answers, its workers and its processes."""
    import labkit

    status = labkit.attach(name).status()
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
        return
    # "healthy: 2 of 2 workers", "degraded: 1 of 2 workers" (one is being replaced) or "not ready: why".
    click.echo(f"{status.name} ({status.backend}) at {status.url}: {status.summary}")
    click.echo(f"{status.workers} worker(s) answering, {status.engine} engine")
    click.echo(status.processes_frame().to_string(index=False))
