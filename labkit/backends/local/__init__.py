"""The local backend: the production server as processes on this machine, supervised as systemd would.

    backend.py     ``LocalBackend``: a private RabbitMQ node, Celery workers, gunicorn behind nginx
    supervisor.py  the deployment's own supervisord, which restarts what dies
"""
