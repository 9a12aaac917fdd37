"""What every backend builds on: running commands, processes, the broker, the proxy, the user-data.

Nothing here knows which backend it serves; the backends and the CI/CD
pipeline put these pieces together.

    hosts.py      run a command line on this machine or over SSH (``Host.run``)
    ssh.py        the SSH connection to a VM (paramiko): commands, files, port forwards
    procs.py      start processes labkit can find and stop again; ``wait_until``
    health.py     ``GET /healthz``, the same for every backend
    rabbitmq.py   a private RabbitMQ node, and the broker accounts labkit makes
    nginx.py      the buffering proxy in front of gunicorn
    compose.py    ``docker compose`` command lines and their output
    cloudinit.py  rendering the cloud-init user-data, and the release it carries
    console.py    a VM's console, read as the progress markers it prints
"""
