"""The ``labkit`` command: the same verbs as the Python API."""

from __future__ import annotations

import os

import click

from .._errors import LabkitError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="model-serving-lab")
def labkit() -> None:
    """Deploy, watch, scale and time the lab's production server."""


def _register() -> None:
    from . import bake, bench, cicd, cleanup, cloud_init, down, grade, logs, scale, scale_out, status, train, up

    for module in (up, status, scale, scale_out, bake, logs, down, cleanup, train, bench, cloud_init, cicd, grade):
        labkit.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        labkit.main(args=argv, prog_name="labkit", standalone_mode=False)
    except LabkitError as exc:
        if os.environ.get("LABKIT_DEBUG"):
            raise
        click.echo(f"labkit: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0
