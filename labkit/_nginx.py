"""The buffering proxy in front of gunicorn: a private nginx per local deployment.

gunicorn's sync and threaded workers give a thread to each connection for as
long as it lasts, so clients that send their headers or body slowly, or hold
idle keep-alive connections, take all 16 threads and every other request
waits (gunicorn's documentation: "Deploying Gunicorn", which recommends
nginx in front). nginx reads each request whole, with short timeouts, before
it hands it to gunicorn over a unix socket, and takes the answer whole, so a
gunicorn thread is busy only while the app works.

Debian's nginx, run by the deployment's supervisord in the foreground, with
everything in the run directory:

    <run>/nginx/nginx-PORT.conf   written by labkit (the port in the name: another port, another command)
    <run>/nginx/tmp/         request bodies and answers too large for memory
    <run>/logs/nginx.log     its error log (stderr, through supervisord)
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from pathlib import Path

from ._errors import PrerequisiteMissing

INSTALL_HINT = "install it with `sudo apt-get install nginx` (labkit runs one nginx per deployment)"
# What the app accepts (production_server's MAX_CONTENT_LENGTH): nginx refuses longer bodies first.
MAX_BODY = "256k"
SYSTEM_PATHS = ("/usr/sbin/nginx",)


def find() -> str:
    for candidate in SYSTEM_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nginx")
    if found is None:
        raise PrerequisiteMissing(f"nginx was not found: {INSTALL_HINT}.")
    return found


def command(conf: Path) -> list[str]:
    # -e: the error log before the configuration is read (else /var/log/nginx, root's);
    # -p: relative paths in the configuration are the deployment's.
    return [find(), "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)]


def _user_line() -> str:
    """Run as root, nginx's workers would become nobody, who cannot reach gunicorn's socket in a
    private run directory: they run as the user who runs labkit. Otherwise nginx cannot switch users."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"


def site(listen: str, upstream: str) -> str:
    """The upstream and server blocks: listen on ``listen``, proxy to gunicorn at ``upstream``.

    What the local backend's nginx and the VM's (cloud-init's single-server
    template, in Debian's ``/etc/nginx/conf.d``) both serve. Every setting is
    in the server block, where the distribution's own http block cannot
    clash with it.
    """
    too_large = ('{"error": "the request body is larger than 262144 bytes: send fewer rows per request"}')
    # What nginx itself refuses while reading a request it has routed to the API (a malformed chunked
    # body, a body that stops coming): JSON there too, as the application's own errors are.
    malformed = ('{"error": "the request is malformed (its body could not be read): send it again, well formed"}')
    too_slow = ('{"error": "the request body came too slowly: send it again, at once"}')
    return f"""upstream gunicorn {{
    server {upstream};
    keepalive 16;
}}

server {{
    listen {listen} backlog=4096;
    server_name _;
    access_log off;
    server_tokens off;
    # A slow client: the whole header, and each read of the body, within a few seconds.
    client_header_timeout 5s;
    client_body_timeout 5s;
    send_timeout 10s;
    # Idle keep-alive connections cost nginx a little memory, gunicorn nothing.
    keepalive_timeout 15s;
    keepalive_requests 1000;
    reset_timedout_connection on;
    client_max_body_size {MAX_BODY};
    client_body_buffer_size {MAX_BODY};

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_request_buffering on;
    proxy_buffering on;
    proxy_connect_timeout 5s;
    proxy_read_timeout 60s;

    location / {{
        proxy_pass http://gunicorn;
    }}
    location /api/ {{
        proxy_pass http://gunicorn;
        error_page 413 @too_large;
        error_page 400 @malformed;
        error_page 408 @too_slow;
    }}
    location @too_large {{
        default_type application/json;
        return 413 '{too_large}';
    }}
    location @malformed {{
        default_type application/json;
        return 400 '{malformed}';
    }}
    location @too_slow {{
        default_type application/json;
        return 408 '{too_slow}';
    }}
}}
"""


def render(folder: Path, host: str, port: int, upstream: Path) -> str:
    """nginx.conf for one local deployment: listen on host:port, proxy to gunicorn's unix socket ``upstream``."""
    tmp = folder / "tmp"
    temp_paths = "".join(f"    {kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
    indented = "".join(f"    {line}\n" if line else "\n" for line in site(f"{host}:{port}", f"unix:{upstream}").splitlines())
    return f"""# Written by labkit: the buffering proxy of one local deployment.
{_user_line()}daemon off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    default_type application/octet-stream;
    types {{
        text/html html;
        text/css css;
        application/javascript js;
        application/json json;
    }}
{temp_paths}
{indented}}}
"""


def write(folder: Path, host: str, port: int, upstream: Path, name: str = "nginx.conf") -> Path:
    """Write the configuration (and its temporary folders); return its path."""
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    conf = folder / name
    conf.write_text(render(folder, host, port, upstream))
    return conf
