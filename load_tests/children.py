"""Running `acd` worker processes as children (demo, load tests, chaos, end-to-end tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.samples import Sample

from load_tests.embedded import die_with_parent
from router.errors import AcdError


class ChildProcessError(AcdError):
    """A worker process died or never became ready."""


@dataclass(frozen=True)
class ChildSpec:
    """``acd <command> <args>`` named ``name``, with extra environment variables."""

    name: str
    args: list[str]
    command: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process
    http_port: int  # 0 until the child said which port it got (port_file)
    log_path: Path
    stopping: bool = False
    port_file: Path | None = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ChildProcesses:
    """Starts, watches and stops a set of `acd` processes; their logs go to ``run_dir``."""

    def __init__(self, run_dir: Path, *, log_level: str = "INFO") -> None:
        self.run_dir = run_dir
        self.log_level = log_level
        self.children: dict[str, Child] = {}

    async def start(self, specs: list[ChildSpec]) -> None:
        for spec in specs:
            await self.start_one(spec)

    async def start_one(self, spec: ChildSpec) -> Child:
        env = dict(os.environ) | spec.env
        port = int(env.get("ACD_HTTP__PORT", "0"))
        port_file = self.run_dir / f"{spec.name}.port"
        port_file.unlink(missing_ok=True)
        if not port:
            # The child binds port 0 and says which it got: no window in which another
            # process can take a port picked here for it.
            env["ACD_HTTP__PORT"], env["ACD_HTTP__PORT_FILE"] = "0", str(port_file)
        log_path = self.run_dir / f"{spec.name}.log"
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "workers.cli",
                "--log-level",
                self.log_level,
                spec.command,
                *spec.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent,
                start_new_session=True,  # Ctrl-C reaches the parent only: it stops them in order
            )
        child = Child(spec, process, port, log_path, port_file=None if port else port_file)
        self.children[spec.name] = child
        return child

    async def _learn_port(self, child: Child, deadline: float) -> None:
        """The port the child wrote once listening (it fails loudly if it dies first)."""
        while child.port_file is not None and not child.http_port:
            if child.port_file.exists():
                child.http_port = int(child.port_file.read_text())
                return
            self._raise_if_dead(child)
            if time.monotonic() > deadline:
                raise ChildProcessError(f"{child.spec.name} did not listen in time; its log:\n{child.log_tail()}")
            await asyncio.sleep(0.05)

    def http_ports(self) -> dict[str, int]:
        return {name: child.http_port for name, child in self.children.items()}

    async def wait_ready(self, timeout_s: float = 60.0, names: list[str] | None = None) -> None:
        """Wait until every child (or those in ``names``) answers 200 on /ready."""
        deadline = time.monotonic() + timeout_s
        wanted = [self.children[name] for name in names] if names is not None else self.children.values()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for child in wanted:
                await self._learn_port(child, deadline)
                while not await _ready(session, child.http_port):
                    self._raise_if_dead(child)
                    if time.monotonic() > deadline:
                        raise ChildProcessError(
                            f"{child.spec.name} not ready after {timeout_s:.0f}s; its log:\n{child.log_tail()}"
                        )
                    await asyncio.sleep(0.1)

    def _raise_if_dead(self, child: Child) -> None:
        code = child.process.returncode
        if code is not None and not child.stopping:
            raise ChildProcessError(
                f"{child.spec.name} exited with status {code}; its log:\n{child.log_tail()}"
            )

    def check_alive(self) -> None:
        for child in self.children.values():
            self._raise_if_dead(child)

    async def watch(self, until: asyncio.Event) -> None:
        """Fail loudly if a child dies before ``until`` is set."""
        while not until.is_set():
            self.check_alive()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), 0.5)

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Fault injection: signal one child (SIGKILL by default) and wait for it to die."""
        child = self.children[name]
        child.stopping = True
        child.process.send_signal(sig)
        await child.process.wait()

    async def restart(self, name: str, *, timeout_s: float = 60.0) -> Child:
        """Start a child that died (``kill``) again with the same command, as systemd's
        ``Restart=`` does, and wait until it is ready; its log goes on in the same file."""
        old = self.children[name]
        if old.process.returncode is None:
            raise ChildProcessError(f"{name} is still running (pid {old.process.pid}): kill it first")
        child = await self.start_one(old.spec)
        await self.wait_ready(timeout_s, names=[name])
        return child

    async def readiness(self, session: aiohttp.ClientSession) -> dict[str, Readiness]:
        """Each live child's /ready now (one request each, side by side)."""
        live = {n: c for n, c in self.children.items() if c.http_port and c.process.returncode is None}
        answers = await asyncio.gather(*(_readiness(session, c.http_port) for c in live.values()))
        return dict(zip(live, answers, strict=True))

    async def stop(self, grace_s: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every child, wait for clean exits (SIGKILL after ``grace_s``); exit codes."""
        for child in self.children.values():
            child.stopping = True
            if child.process.returncode is None:
                child.process.terminate()
        codes: dict[str, int | None] = {}
        for name, child in self.children.items():
            try:
                codes[name] = await asyncio.wait_for(child.process.wait(), grace_s)
            except TimeoutError:
                child.process.kill()
                await child.process.wait()
                codes[name] = None  # did not stop within the grace period
        return codes


@dataclass(frozen=True)
class Readiness:
    """One answer of a process's /ready: whether it is ready, and each link's probe
    (``answered`` False: no answer at all, e.g. the process is busy or gone)."""

    answered: bool
    ready: bool = False
    links: dict[str, bool] = field(default_factory=dict)


async def _readiness(session: aiohttp.ClientSession, port: int) -> Readiness:
    try:
        async with session.get(f"http://127.0.0.1:{port}/ready") as response:
            body = await response.json()
            return Readiness(True, response.status == 200, dict(body.get("links", {})))
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return Readiness(False)


async def _ready(session: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with session.get(f"http://127.0.0.1:{port}/ready") as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def scrape_samples(ports: dict[str, int]) -> list[Sample]:
    """Every sample of every process's /metrics (a process that is gone adds nothing)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[Sample] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for port in ports.values():
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError, OSError):
                continue
            samples.extend(s for family in text_string_to_metric_families(text) for s in family.samples)
    return samples


async def scrape_totals(ports: dict[str, int], names: tuple[str, ...]) -> dict[str, float]:
    """Sum the named metrics (all label sets) over every process's /metrics."""
    totals = dict.fromkeys(names, 0.0)
    for sample in await scrape_samples(ports):
        if sample.name in totals:
            totals[sample.name] += sample.value
    return totals
