import json
from pathlib import Path

import click


@click.group("cloud-init")
def command() -> None:
    """Show the cloud-init user-data a VM receives."""


@command.command("list")
def list_templates() -> None:
    """Name the templates and what each builds."""
    from ..infra import cloudinit

    for name, description in cloudinit.templates().items():
        click.echo(f"{name:15} {description}")


@command.command("render")
@click.argument("template")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of printing.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option("--broker-host", default="BROKER_HOST", show_default=True, help="The server's private address (worker template).")
@click.option("--schema", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="cloud-init's JSON schema to validate against [default: the one scripts/setup.sh "
                   "took from Debian's cloud-init package, or LABKIT_CLOUDINIT_SCHEMA].")
@click.option("--baked", is_flag=True, help="The short variant for a VM booting from an image `labkit bake` made.")
def render(template: str, out: Path | None, workers: int, broker_host: str, schema: Path | None, baked: bool) -> None:
    """Render TEMPLATE with placeholders for the secrets, and check its size (and schema)."""
    import labkit

    from ..infra import cloudinit
    from ..notebook import show

    settings = labkit.Settings.from_env()
    schema = schema or show.schema_path()
    text = cloudinit.render(template, settings.model_dir, workers=workers, broker_host=broker_host, baked=baked)
    problems = cloudinit.check(text, json.loads(schema.read_text()) if schema else None)
    if out:
        out.write_text(text)
        click.echo(f"Wrote {out}.", err=True)
    else:
        click.echo(text, nl=False)
    size = cloudinit.encoded_size(text)
    click.echo(f"{size} of {cloudinit.USERDATA_LIMIT} bytes after gzip and base64; "
               + (f"checked against {schema}" if schema else f"cloud-init's schema was not found: {show.SCHEMA_HELP}"),
               err=True)
    if problems:
        raise labkit.ConfigError("The rendered user-data has problems:\n  " + "\n  ".join(problems))
