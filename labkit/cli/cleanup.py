import click


@click.command("cleanup")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (for scripts).")
@click.option("--all-owners", is_flag=True, help="List and delete every owner's lab resources, not only yours.")
@click.option("--machines", is_flag=True, help="Instead: the machine backend's machines and namespaces that a "
                                               "crash left on this host (no cloud needed).")
def command(yes: bool, all_owners: bool, machines: bool) -> None:
    """Find everything the lab left on the OpenStack cloud, and delete it.

    Lists the servers, floating IPs, security groups and images tagged as
    your lab's, asks, then deletes them. Credentials: clouds.yaml with
    OS_CLOUD, or the OS_* variables of your openrc file. With --machines,
    the same for the local machines of the machine backend.
    """
    import pandas as pd

    if machines:
        _machines(yes)
        return

    from ..backends.openstack import cleanup as _cleanup
    from ..backends.openstack.backend import CloudSettings
    from ..backends.openstack.cloud import OpenStackCloud

    cloud = OpenStackCloud.connect()
    owner = None if all_owners else CloudSettings.from_env().owner
    plan = _cleanup.find(cloud, owner)
    if not plan:
        click.echo("Nothing of the lab's is left on the cloud.")
        _cleanup.forget_gone(cloud, say=click.echo)
        return
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        click.echo(_cleanup.plan_table(plan).to_string(index=False))
    count = len(plan.servers) + len(plan.floating_ips) + len(plan.security_groups) + len(plan.images)
    if not yes and not click.confirm(f"Delete these {count} resource(s)?", default=False):
        click.echo("Nothing was deleted.")
        return
    outcome = _cleanup.delete(cloud, plan, say=click.echo)
    click.echo(f"Deleted {len(outcome.deleted)} resource(s); nothing of the lab's is left on the cloud.")


def _machines(yes: bool) -> None:
    from ..backends.machine import cleanup

    found, owned = cleanup.survey()
    for machine in owned:
        click.echo(f"Kept: {machine.name}, recorded in {machine.detail}: `labkit down` of that deployment "
                   "stops it.")
    if not found:
        click.echo("No machine or namespace that a crash left is on this host.")
        return
    for leftover in found:
        click.echo(f"{leftover.kind:10} {leftover.name:24} {leftover.detail}")
    if not yes and not click.confirm(f"Remove these {len(found)}?", default=False):
        click.echo("Nothing was removed.")
        return
    for leftover in found:
        cleanup.remove(leftover)
    click.echo(f"Removed {len(found)}; no machine or namespace that a crash left is on this host.")
