import click

from ._options import name_option


@click.command("scale-out")
@click.argument("vms", type=click.IntRange(0, 8))
@click.option("--workers-per-vm", default=1, show_default=True, type=click.IntRange(1, 8),
              help="Celery workers on each worker VM.")
@name_option
def command(vms: int, workers_per_vm: int, name: str) -> None:
    """Run exactly VMS worker VMs that join the server's broker over the private network (0 removes them)."""
    import labkit

    lab = labkit.attach(name)
    seconds = lab.scale_out(vms, workers_per_vm=workers_per_vm)
    status = lab.status()
    hosts = ", ".join(f"{host}: {len(names)}" for host, names in status.workers_by_host().items())
    click.echo(f"{status.workers} worker(s) answering after {seconds:.1f}s ({hosts}).")
