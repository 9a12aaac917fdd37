import click

name_option = click.option(
    "--name", default="lab", show_default=True, envvar="LABKIT_NAME", show_envvar=True, help="Which deployment."
)
