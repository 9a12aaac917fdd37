import click
from production_server.engines import ENGINES

from ._options import name_option


def _cloud_option(name: str, variable: str, help: str):
    return click.option(f"--{name}", envvar=variable, show_envvar=True, default=None,
                        help=f"{help} (openstack backend).")


@click.command("up")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16), help="Celery workers to start.")
@click.option("--backend", type=click.Choice(["local", "openstack", "docker"]), envvar="LABKIT_BACKEND", show_envvar=True,
              default="local", show_default=True, help="Where to deploy.")
@click.option("--engine", type=click.Choice(ENGINES), envvar="LABKIT_ENGINE", show_envvar=True, default="keras",
              show_default=True, help="What the workers run the model with (onnx: ONNX Runtime, no TensorFlow).")
@_cloud_option("image", "LABKIT_OS_IMAGE", "Image name, e.g. 'Ubuntu 24.04'")
@_cloud_option("flavor", "LABKIT_OS_FLAVOR", "Flavor name")
@_cloud_option("network", "LABKIT_OS_NETWORK", "The project's network")
@_cloud_option("keypair", "LABKIT_OS_KEYPAIR", "Key pair name on the cloud")
@name_option
def command(workers: int, backend: str, engine: str, image, flavor, network, keypair, name: str) -> None:
    """Start the production server and wait until it answers."""
    import labkit

    target = backend
    if backend == "openstack":
        from dataclasses import replace

        from labkit.backends.openstack import CloudSettings, OpenStackBackend

        chosen = {"image": image, "flavor": flavor, "network": network, "keypair": keypair}
        settings = replace(CloudSettings.from_env(), **{k: v for k, v in chosen.items() if v})
        target = OpenStackBackend(cloud_settings=settings)
    lab = labkit.deploy(target, name=name, workers=workers, engine=engine)
    status = lab.status()
    click.echo(f"{lab.name} is up at {lab.url} with {status.workers} worker(s), {status.engine} engine.")
