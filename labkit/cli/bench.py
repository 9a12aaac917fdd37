import json

import click

from ._options import name_option


@click.command("bench")
@click.option("--requests", default=2000, show_default=True, help="Requests per throughput run.")
@click.option("--concurrency", default=16, show_default=True, help="Concurrent clients in the throughput runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@name_option
def command(requests: int, concurrency: int, as_json: bool, name: str) -> None:
    """Measure the floor, latency, throughput and the original design, in one run."""
    import labkit
    from labkit import _bench

    lab = labkit.attach(name)
    report = _bench.run(lab, requests=requests, concurrency=concurrency,
                        say=lambda text: click.echo(text, err=True))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        m = report.machine
        click.echo(f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}:\n")
        click.echo(report.markdown())
