"""What `jobq dev` keeps in `.jobq/` under the working directory, so a restart loses nothing:

- `admin-token`: the admin token, made once (mode 0600) and read at every start, so an open dashboard and
  an exported JOBQ_API_KEY keep working;
- `redis/`: the data of a `redis-server` that `jobq dev` runs as its child when one is installed (AOF, so a
  Ctrl-C or a crash loses at most the last second); without one the embedded backend keeps data in memory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

DATA_DIR = ".jobq"
TOKEN_FILE = "admin-token"  # noqa: S105  (a file name, not a secret)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class DevDataError(Exception):
    """`.jobq/` cannot be used as it is (another server on it, no redis-server start): one line to print."""


def data_dir(cwd: Path | None = None) -> Path:
    path = (cwd or Path.cwd()) / DATA_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def admin_token(directory: Path) -> str:
    """The token in `directory/admin-token`, made on first use; only its owner may read it."""
    path = directory / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
        raise DevDataError(f"{path} is empty: delete it and a new token is made") from None
    with os.fdopen(fd, "w", encoding="ascii") as file:
        token = secrets.token_urlsafe(32)
        file.write(token + "\n")
    return token


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RedisServer:
    """A `redis-server` child on a free loopback port with its data in `directory`, stopped on exit.

    It runs in a session of its own: Ctrl-C reaches `jobq dev` alone, which stops the stack (handing jobs
    back writes to Redis) before it stops the server.
    """

    def __init__(self, binary: str, directory: Path, host: str = "127.0.0.1") -> None:
        self.binary, self.directory, self.host = binary, directory, host
        self.pidfile = directory / "redis-server.pid"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _check_not_in_use(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if _alive(pid):
            raise DevDataError(
                f"a redis-server (pid {pid}) still uses {self.directory}: another `jobq dev` here, "
                f"or one that was killed (stop it with `kill {pid}`)"
            )

    def __enter__(self) -> RedisServer:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._check_not_in_use()
        self.port = _free_port(self.host)
        command = [
            self.binary,
            *("--bind", self.host, "--port", str(self.port), "--dir", str(self.directory)),
            *("--appendonly", "yes", "--save", ""),
            *("--pidfile", str(self.pidfile), "--logfile", str(self.directory / "redis-server.log")),
        ]
        # The binary is the one on PATH and every argument is ours: no untrusted input.
        self.proc = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_ping(self.host, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                log = self.directory / "redis-server.log"
                raise DevDataError(f"redis-server did not start; see {log}")
            time.sleep(0.05)  # polling interval, bounded by the deadline above
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: Redis flushes its AOF and exits
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
