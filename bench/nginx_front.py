"""The shipped ``deploy/nginx.conf`` in front of replicas on this machine, without Docker.

Only what belongs to the machine is rewritten: the one ``server api:8000`` upstream line becomes
one line per local replica port, the listen address a loopback port, and the log, pid and
temporary paths a work directory. Used by the replica tests and ``bench.replica_convergence``
(``--nginx``), so both run the compose topology through the same configuration.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.service_process import free_port, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"
UPSTREAM_LINE = re.compile(r"^(\s*)server api:8000( [^;]*);$", re.MULTILINE)


def nginx_binary() -> str | None:
    """Debian's nginx (``apt-get install nginx-light``), or None."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


def machine_config(ports: list[int], listen_port: int, workdir: Path) -> str:
    """deploy/nginx.conf with its one upstream server replaced by ``ports`` on 127.0.0.1, its
    listen address by ``listen_port`` and its logs and temporary files under ``workdir``."""
    text = NGINX_CONF.read_text()
    (line,) = UPSTREAM_LINE.findall(text)  # one `server api:8000 ...;`, the compose service
    indent, params = line
    servers = "\n".join(f"{indent}server 127.0.0.1:{port}{params};" for port in ports)
    text = UPSTREAM_LINE.sub(lambda _: servers, text)
    if text.count("listen 8080;") != 1:
        raise ValueError(f"{NGINX_CONF} no longer has exactly one `listen 8080;`")
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")
    text = text.replace("/var/log/nginx/", f"{workdir}/")
    temp_paths = "".join(
        f"    {kind}_temp_path {workdir / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return text.replace("http {\n", "http {\n" + temp_paths, 1)


def nginx_command(binary: str, conf: Path, workdir: Path, *, test_only: bool) -> list[str]:
    # The pid file and, when run as root, the workers' user are the machine's business, not
    # the shipped file's (the official image runs its workers as `nginx`). One -g only: nginx
    # keeps the last.
    globals_ = f"pid {workdir / 'nginx.pid'}; daemon off;"
    if os.geteuid() == 0:
        globals_ += " user root;"
    mode = ["-t"] if test_only else []
    return [binary, "-e", "stderr", "-p", str(workdir), "-c", str(conf), "-g", globals_, *mode]


@contextmanager
def running_nginx(binary: str, ports: list[int], workdir: Path) -> Iterator[str]:
    """nginx with the shipped configuration over ``ports``; its URL once its /healthz answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    listen_port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(machine_config(ports, listen_port, workdir))
    with open(workdir / "stderr", "wb") as log:
        nginx = subprocess.Popen(
            nginx_command(binary, conf, workdir, test_only=False),
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{listen_port}"
    try:
        wait_ready(nginx, url, 10, probe="/healthz", poll_s=0.05)
        yield url
    finally:
        if nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)  # nginx's graceful shutdown
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
