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

from .._errors import PrerequisiteMissing
from .._files import SERVER_DIR

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
    restarting = ('{"error": "the web server is not answering (it may be restarting): retry in a few seconds"}')
    # What nginx refuses before it knows where a request goes: JSON too, since the clients that
    # send such requests are programs, and gunicorn behind allows more, so its HTML never shows.
    uri_too_long = ('{"error": "the request line is longer than 4 KiB: send the data in the body"}')
    headers_too_large = ('{"error": "a header is longer than 4 KiB, or all of them together longer than '
                         '16 KiB: send fewer or shorter headers"}')
    bad_request = ('{"error": "the request line or a header could not be parsed: send a well-formed '
                   'HTTP/1.1 request"}')
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
    # The request line and each header within 4 KiB, 16 KiB for all headers: less than gunicorn
    # accepts (production_server/gunicorn_conf.py), so nginx is the one that refuses.
    large_client_header_buffers 4 4k;
    # To paths, not named locations: a request line nginx could not read has no URI to keep.
    error_page 414 /.refused/uri-too-long;
    error_page 494 =431 /.refused/headers-too-large;
    error_page 400 /.refused/bad-request;
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
        # gunicorn not there (restarting after a crash): the API's 503, as when no worker answers.
        error_page 502 504 =503 @restarting;
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
    location @restarting {{
        default_type application/json;
        add_header Retry-After 2 always;
        return 503 '{restarting}';
    }}
    location = /.refused/uri-too-long {{
        internal;
        default_type application/json;
        return 414 '{uri_too_long}';
    }}
    location = /.refused/headers-too-large {{
        internal;
        default_type application/json;
        return 431 '{headers_too_large}';
    }}
    location = /.refused/bad-request {{
        internal;
        default_type application/json;
        return 400 '{bad_request}';
    }}
}}
"""


#: The Compose stack's copy of the site, gunicorn at the web service (a test keeps it equal to ``site``).
COMPOSE_CONF = SERVER_DIR / "nginx.conf"


def compose_conf() -> str:
    return ("# Written by labkit (labkit/infra/nginx.py: site), for compose.yaml's proxy service.\n"
            + site("0.0.0.0:5100", "web:5100"))


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
