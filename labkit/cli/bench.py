import json
import sys
from pathlib import Path

import click

from ._options import name_option


def _numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        numbers = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give whole numbers separated by commas, e.g. 1,2,3.") from None
    if any(n < 1 for n in numbers):
        raise click.BadParameter(f"{value!r}: every number must be at least 1.")
    return numbers


@click.command("bench")
@click.option("--requests", default=2000, show_default=True, help="Requests per throughput run.")
@click.option("--concurrency", callback=_numbers,
              help="Concurrent clients in the throughput runs [default: 16; with --sweep the list 1,4,16].")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--sweep", "do_sweep", is_flag=True,
              help="Throughput and latency for every workers x concurrency point: writes sweep.csv and sweep.png.")
@click.option("--workers", default="1,2,3", show_default=True, callback=_numbers,
              help="With --sweep: the worker counts.")
@click.option("--duration", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --sweep: seconds of load per point.")
@click.option("--engines", is_flag=True,
              help="Compare the keras and onnx engines in fresh deployments of their own: writes engines.csv.")
@click.option("--out", default=".", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the files --sweep and --engines write.")
@name_option
def command(requests: int, concurrency: tuple[int, ...] | None, as_json: bool, do_sweep: bool, workers: tuple[int, ...],
            duration: float, engines: bool, out: Path, name: str) -> None:
    """Measure the floor, latency, throughput and the original design, in one run.

    With --sweep and/or --engines, run those experiments instead.
    """
    import labkit

    from ..experiments import bench as _bench

    if do_sweep or engines:
        _experiments(name, do_sweep, engines, workers, concurrency or (1, 4, 16), duration, out)
        return
    lab = labkit.attach(name)
    report = _bench.run(lab, requests=requests, concurrency=concurrency[-1] if concurrency else 16,
                        say=lambda text: click.echo(text, err=True))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _heading(report.machine)
        click.echo(report.markdown())


def _heading(machine: dict) -> None:
    click.echo(f"Measured {machine['date']} on {machine['cores']} cores ({machine['cpu']}), "
               f"Python {machine['python']}:\n")


def _experiments(name: str, do_sweep: bool, engines: bool, workers: tuple[int, ...],
                 concurrency: tuple[int, ...], duration: float, out: Path) -> None:
    import labkit

    if do_sweep:
        # Progress goes to stderr: stdout holds only the tables, ready for a README.
        result = labkit.sweep(labkit.attach(name), workers=workers, concurrency=concurrency, duration=duration,
                              stream=sys.stderr)
        files = result.save(out)
        _heading(result.machine)
        click.echo(result.markdown())
        click.echo(f"\nWrote {files['csv']} and {files['png']}.\n")
    if engines:
        comparison = labkit.compare_engines(stream=sys.stderr)
        path = comparison.to_csv(out / "engines.csv")
        _heading(comparison.machine)
        click.echo(comparison.markdown())
        click.echo(f"\nWrote {path}.")
