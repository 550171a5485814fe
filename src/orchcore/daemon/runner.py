"""The daemon: membership heartbeat, health checking, workflows, push delivery of the
bus's push queues, the bus's upkeep (depth samples, retention), the retention of spans
and of the history tables, and the HTTP API, each a supervised task.

Shutdown (SIGTERM/SIGINT) is graceful: the API stops accepting, in-flight health
checks are cancelled and their leases released so another daemon takes them over at
once, pushes in flight finish or hand their messages back, and the membership row is
marked stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI

from orchcore import __version__
from orchcore.actors import daemon_actor
from orchcore.api import create_app
from orchcore.api.app import close_event_streams
from orchcore.api.otlp_app import create_otlp_app
from orchcore.bus.push import MAX_IN_FLIGHT_PER_QUEUE, MessagePusher
from orchcore.daemon.tls import ListenerTls
from orchcore.db.failures import UNREACHABLE
from orchcore.errors import OrchError
from orchcore.facade import Orch
from orchcore.registry import InstanceHealthChecker
from orchcore.saga.runner import SagaRunner
from orchcore.supervision import TaskSupervisor

log = logging.getLogger("orch.daemon")


class ListenError(OrchError):
    pass


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process whose signals belong to someone else (the daemon, a test)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class DaemonConfig:
    listen: str = "127.0.0.1:7400"
    name: str | None = None
    health_checks: bool = True
    heartbeat_seconds: float = 5.0
    serve_api: bool = True
    workflows: bool = True
    workflow_lease_seconds: float = 30.0
    max_workflows_in_flight: int = 64
    push: bool = True
    push_max_in_flight_per_queue: int = MAX_IN_FLIGHT_PER_QUEUE
    bus_upkeep: bool = True
    #: how often the daemon samples queue depths (the console's chart) ...
    depth_sample_seconds: float = 5.0
    #: ... and removes what retention_hours let go
    retention_seconds: float = 60.0
    #: a listener of its own for OTLP/HTTP span exports (conventionally port 4318)
    otlp_listen: str | None = None
    #: a certificate and key: https (TLS) on the API's listener and the OTLP one
    tls: ListenerTls | None = None

    def roles(self) -> list[str]:
        """What this daemon takes part in, as its start line reports it."""
        wanted = {
            "health-checks": self.health_checks,
            "workflows": self.workflows,
            "push": self.push,
            "bus-upkeep": self.bus_upkeep,
            "api": self.serve_api,
        }
        return [role for role, on in wanted.items() if on]


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(f"--listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


#: Batches of expired spans (and of each history table) a daemon removes a round at most
#: (the rest waits a round).
_TRIM_ROUNDS = 20


class Daemon:
    def __init__(self, orch: Orch, config: DaemonConfig) -> None:
        self.orch = orch
        self.config = config
        self.name = config.name or f"{socket.gethostname()}:{config.listen}"
        self.daemon_id: Any = None
        self._supervisor = TaskSupervisor()
        self._stop = asyncio.Event()
        self._server: EmbeddedServer | None = None
        self._otlp_server: EmbeddedServer | None = None
        self._app: FastAPI | None = None
        self._sockets: list[socket.socket] = []
        self._otlp_sockets: list[socket.socket] = []

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        if self.config.tls is not None:
            self.config.tls.check()  # before anything listens
        host, port = parse_listen(self.config.listen)
        listening = self._bind(host, port) if self.config.serve_api else None
        otlp_listening = None
        if self.config.otlp_listen:
            otlp_host, otlp_port = parse_listen(self.config.otlp_listen)
            otlp_listening = self._bind(otlp_host, otlp_port, into=self._otlp_sockets)
        self.daemon_id = await self.orch.daemons.join(
            name=self.name, listen=listening, version=__version__
        )
        log.info(
            "daemon started",
            extra={
                "daemon": self.name,
                "daemon_id": str(self.daemon_id),
                "listen": listening,
                "otlp_listen": otlp_listening,
                "tls": self.config.tls is not None,
                "roles": self.config.roles(),
            },
        )
        checker: InstanceHealthChecker | None = None
        if self.config.health_checks:
            checker = self.orch.health_checker(
                checker_id=self.daemon_id, actor=daemon_actor(self.name)
            )
            if self.orch.listener is not None:
                self.orch.listener.subscribe(
                    lambda msg: checker.wake() if msg.get("topic") == "instance" else None
                )
            self._supervisor.start("health-checks", checker.run_forever)
        runner = self._start_workflow_runner() if self.config.workflows else None
        pusher = self._start_pusher() if self.config.push else None
        if self.config.bus_upkeep:
            self._supervisor.start("bus-upkeep", self._bus_upkeep_forever)
        self._supervisor.start("membership", self._heartbeat_forever)
        if listening is not None:
            self._supervisor.start("api", self._serve_api)
        if otlp_listening is not None:
            self._supervisor.start("otlp", self._serve_otlp)
        await self.orch.tracing.start()
        self._supervisor.start("trace-upkeep", self._trace_upkeep_forever)
        self._supervisor.start("history-upkeep", self._history_upkeep_forever)
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(checker, runner, pusher)

    def _start_workflow_runner(self) -> SagaRunner:
        runner = SagaRunner(
            self.orch,
            owner=str(self.daemon_id),
            actor=daemon_actor(self.name),
            lease_seconds=self.config.workflow_lease_seconds,
            max_in_flight=self.config.max_workflows_in_flight,
        )
        self.orch.workflows.attach_runner(runner)
        if self.orch.listener is not None:
            self.orch.listener.subscribe(runner.on_notification)
        self._supervisor.start("workflows", runner.run_forever)
        return runner

    def _start_pusher(self) -> MessagePusher:
        pusher = MessagePusher(
            self.orch, max_in_flight_per_queue=self.config.push_max_in_flight_per_queue
        )
        if self.orch.listener is not None:
            self.orch.listener.subscribe(pusher.on_notification)
            self.orch.listener.on_reconnect(pusher.on_reconnect)
        self._supervisor.start("push", pusher.run_forever)
        return pusher

    async def _bus_upkeep_forever(self) -> None:
        """Depth samples every few seconds (one daemon's a round: the others skip), and
        retention now and then."""
        clock = self.orch.clock
        next_retention = clock.monotonic()
        while True:
            try:
                await self.orch.bus.sample_depths(
                    min_interval_seconds=self.config.depth_sample_seconds * 0.8
                )
                if clock.monotonic() >= next_retention:
                    await self.orch.bus.enforce_retention()
                    next_retention = clock.monotonic() + self.config.retention_seconds
            except UNREACHABLE as exc:
                log.warning("bus upkeep failed: %s", exc)
            await clock.sleep(self.config.depth_sample_seconds)

    async def _trace_upkeep_forever(self) -> None:
        """Spans past the retention removed in batches, now and then (each daemon tries;
        the batches skip each other's rows)."""
        retention = timedelta(hours=self.orch.settings.span_retention_hours)
        while True:
            try:
                for _ in range(_TRIM_ROUNDS):  # at most this many batches a round
                    if await self.orch.tracing.trim(older_than=retention) == 0:
                        break
            except UNREACHABLE as exc:
                log.warning("trace retention failed: %s", exc)
            await self.orch.clock.sleep(self.config.retention_seconds)

    async def _history_upkeep_forever(self) -> None:
        """Call events, finished workflows' timelines, breaker transitions and audit
        entries past their windows removed in batches, now and then (a table another
        daemon is pruning is left to it)."""
        while True:
            try:
                removed = await self.orch.retention.prune(max_batches=_TRIM_ROUNDS)
                if any(removed.values()):
                    log.info(
                        "history retention",
                        extra={"removed": {str(table): n for table, n in removed.items() if n}},
                    )
            except UNREACHABLE as exc:
                log.warning("history retention failed: %s", exc)
            await self.orch.clock.sleep(self.config.retention_seconds)

    def _bind(self, host: str, port: int, *, into: list[socket.socket] | None = None) -> str:
        """Bind before joining, so a taken port fails fast with one clear line."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Naming TCP explicitly lets asyncio switch off Nagle (TCP_NODELAY) on accepted
        # connections; with proto 0 each keep-alive request waits ~40 ms.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        if into is None:
            self._sockets = [sock]
        else:
            into.append(sock)
        bound_port = sock.getsockname()[1]
        return f"{host}:{bound_port}"

    async def _serve_otlp(self) -> None:
        config = uvicorn.Config(
            create_otlp_app(self.orch),
            log_config=None,
            access_log=False,
            lifespan="off",
            **self._tls_options(),
        )
        self._otlp_server = EmbeddedServer(config)
        await self._otlp_server.serve(sockets=self._otlp_sockets)

    async def _serve_api(self) -> None:
        app = self._app = create_app(self.orch, daemon_name=self.name)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", **self._tls_options()
        )
        self._server = EmbeddedServer(config)
        await self._server.serve(sockets=self._sockets)

    def _tls_options(self) -> dict[str, Any]:
        return {} if self.config.tls is None else self.config.tls.uvicorn_options()

    async def _heartbeat_forever(self) -> None:
        while True:
            try:
                await self.orch.daemons.heartbeat(self.daemon_id)
            except (OSError, OrchError) as exc:
                log.warning("membership heartbeat failed: %s", exc)
            except Exception as exc:  # asyncpg errors: keep beating once the DB is back
                log.warning("membership heartbeat failed: %s", exc)
            await self.orch.clock.sleep(self.config.heartbeat_seconds)

    async def _shutdown(
        self,
        checker: InstanceHealthChecker | None,
        runner: SagaRunner | None,
        pusher: MessagePusher | None,
    ) -> None:
        log.info("daemon stopping", extra={"daemon": self.name})
        if self._server is not None:
            self._server.should_exit = True  # uvicorn finishes in-flight requests, then returns
        if self._app is not None:
            close_event_streams(self._app)  # an event stream never finishes by itself
        if self._otlp_server is not None:
            self._otlp_server.should_exit = True
        if runner is not None:
            self.orch.workflows.attach_runner(None)
            await runner.stop(grace_seconds=5.0)  # drives reach a commit; leases go back
            await self._supervisor.wait("workflows", timeout=5.0)
        if pusher is not None:
            await pusher.stop(grace_seconds=5.0)  # in flight: finished or handed back
            await self._supervisor.wait("push", timeout=5.0)
        await self._supervisor.stop("bus-upkeep")
        await self._supervisor.stop("health-checks")
        if checker is not None:
            with contextlib.suppress(Exception):
                await checker.release()
            await checker.close()
        await self._supervisor.wait("api", timeout=10.0)
        await self._supervisor.wait("otlp", timeout=10.0)
        await self._supervisor.stop("trace-upkeep")
        await self._supervisor.stop("history-upkeep")
        await self._supervisor.stop()
        with contextlib.suppress(Exception):
            await self.orch.daemons.leave(self.daemon_id)
        for sock in self._sockets + self._otlp_sockets:
            sock.close()
        log.info("daemon stopped", extra={"daemon": self.name})


def install_signal_handlers(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
