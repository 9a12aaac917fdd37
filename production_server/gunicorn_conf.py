"""gunicorn's settings for the production server, the same wherever it runs.

Every command that starts it (labkit's local backend, the VM's systemd unit,
the Dockerfile) passes ``--config python:production_server.gunicorn_conf``
and gives the worker class, process and thread counts and the address itself.

What gunicorn answers on its own, before Flask sees the request, is an HTML
page (``gunicorn.util.write_error``, which no setting changes) that closes the
connection: a request line over ``limit_request_line`` (414), too many or too
long header fields (431), a line it cannot parse (400). gunicorn never faces
clients: nginx is in front wherever it runs (``labkit/infra/nginx.py``), refuses
request lines and headers over 4 KiB (16 KiB in all) itself, in JSON, and
passes on only well-formed requests. So the limits here are gunicorn's
largest, above nginx's: what nginx lets through, gunicorn takes.
"""

from __future__ import annotations

import os

from production_server.config import DEFAULTS

limit_request_line = 8190  # gunicorn's maximum
limit_request_fields = 32768  # its maximum; nginx's 16 KiB hold fewer
limit_request_field_size = 8190

#: The app's MAX_CONTENT_LENGTH, read as create_app reads it.
MAX_BODY = int(os.environ.get("SERVER_MAX_CONTENT_LENGTH") or str(DEFAULTS["MAX_CONTENT_LENGTH"]))


def pre_request(worker, req):
    """Close the connection after a request whose body the app may leave unread.

    gunicorn writes the Connection header itself (it drops the application's,
    a hop-by-hop header) before it knows whether the rest of the body can be
    skipped: after the response it reads at most 64 KiB of what the app left,
    then closes a connection it has just called keep-alive. The app reads what
    is left of a body within MAX_BODY itself; a longer body (the app answers
    413 without reading it) or a chunked one (whose length nobody knows
    beforehand) gets ``Connection: close``, and gunicorn does close it.
    """
    worker.log.debug("%s %s", req.method, req.path)  # what gunicorn's default hook does
    headers = dict(req.headers)  # gunicorn has refused a request with two Content-Lengths
    if "TRANSFER-ENCODING" in headers or int(headers.get("CONTENT-LENGTH", 0)) > MAX_BODY:
        req.force_close()
