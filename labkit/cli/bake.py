import click

from ._options import name_option


@click.command("bake")
@click.option("--image", "image_name", default=None, help="The image's name (default: labkit-NAME-DATE-TIME).")
@name_option
def command(image_name: str | None, name: str) -> None:
    """Snapshot the deployment's server into an image that deploys without the installs.

    The snapshot holds none of the deployment's secrets; the server serves
    again afterwards. Deploy from the image with `labkit up --backend
    openstack --image IMAGE`; `labkit down` deletes it with the deployment.
    """
    import labkit

    image = labkit.attach(name).bake(image_name)
    click.echo(f"The image {image['name']} ({image['id']}) is {image['status']}: "
               f"`labkit up --backend openstack --image {image['name']} --name NEW` deploys from it.")
