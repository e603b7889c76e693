"""A PostgreSQL cluster of one's own (initdb into a temp dir, as .ci/run does), which a test or a
bench may stop and start, and Debian's PgBouncer in front of a database, from a config in a temp dir.
tests/bot/pg_cluster.py makes them fixtures."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import unused_port

PGBOUNCER = "/usr/sbin/pgbouncer"
READY_WAIT_S = 30.0


class Unavailable(RuntimeError):
    """This machine lacks the server binaries."""


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise Unavailable("no PostgreSQL server binaries under /usr/lib/postgresql (.ci/run installs them)")
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else command


def wait_for_port(port: int, timeout_s: float = READY_WAIT_S) -> None:
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > give_up:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s") from None
            time.sleep(0.05)


def _own_dir(prefix: str) -> Path:
    """A fresh folder straight under /tmp that the postgres user can reach (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.getuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    return root


class PgCluster:
    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = _own_dir("xinyi-test-pg-")
        self.data = self.root / "data"
        self.port = unused_port()
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "--username=postgres",
                                     "--encoding=UTF8", "--no-locale"]), check=True, capture_output=True)

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port or self.port}/{database}"

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                                     "-w", "start", "-o", options]), check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def createdb(self, name: str) -> None:
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                       check=True, capture_output=True)


class PgBouncer:
    """Transaction pooling in front of `cluster`, listening on a port of its own."""

    def __init__(self, cluster: PgCluster) -> None:
        if not os.path.exists(PGBOUNCER):
            raise Unavailable(f"PgBouncer is not installed ({PGBOUNCER}; apt-get install pgbouncer, as .ci/run does)")
        self.port = unused_port()
        self.root = root = _own_dir("xinyi-test-pgbouncer-")
        (root / "users.txt").write_text('"postgres" ""\n')
        self.config = root / "pgbouncer.ini"
        self.config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {root / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
            # Before PgBouncer 1.21 prepared statements outlive their transaction on the server: dropped after each.
            "server_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n"
            f"logfile = {root / 'pgbouncer.log'}\npidfile = {root / 'pgbouncer.pid'}\n"
        )
        if os.getuid() == 0:
            for path in root.iterdir():
                shutil.chown(path, "postgres", "postgres")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        user = ["--user", "postgres"] if os.getuid() == 0 else []  # it refuses to run as root
        self.process = subprocess.Popen([PGBOUNCER, *user, str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)
