"""`orch demo`: the whole thing on one machine, with nothing set up beforehand.

Starts (or reuses) the embedded PostgreSQL unless a DSN is given, the example
wedding platform (five services on loopback ports), registers them with their
dependencies and the platform's queue (booking_events, pushed to the notification
service), starts a daemon, and opens the console. With chaos, the notification
service refuses some events for good, so dead letters pile up for the Queues pane.
Ctrl-C (or quitting the console) stops everything it started, in order: instances
are deregistered, then the daemon and the platform stop, then the embedded server if
nobody else uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import httpx

import orchcore
from orchcore.cli.context import settings_from
from orchcore.cli.processes import ChildProcess
from orchcore.db.migrate import SchemaMode
from orchcore.errors import ConflictError, OrchError
from orchcore.facade import Orch
from orchcore.settings import Settings

DEMO_ACTOR = "demo"
#: With chaos, the share of pushed booking events the notification service refuses
#: (answered 422: the bus dead-letters them at once).
EVENT_REJECT_RATE = 0.1
DEFAULT_INSTANCES = "booking=1,venue=2,catering=1,photographer=2,payment=1,notification=1"


class DemoFailed(OrchError):
    pass


@dataclass(frozen=True)
class DemoInstance:
    service: str
    instance_id: str
    host: str
    port: int
    version: str


def examples_dir() -> Path:
    """The example platform: $ORCH_EXAMPLES_DIR, the source checkout, or the wheel's copy."""
    if os.environ.get("ORCH_EXAMPLES_DIR"):
        return Path(os.environ["ORCH_EXAMPLES_DIR"])
    package = Path(orchcore.__file__).resolve().parent
    for candidate in (
        package.parents[1] / "examples" / "wedding",
        package / "examples" / "wedding",
    ):
        if (candidate / "platform.py").is_file():
            return candidate
    raise DemoFailed("the example wedding platform is missing (examples/wedding/platform.py)")


def load_manifest(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("orch_wedding_manifest", folder / "manifest.py")
    if spec is None or spec.loader is None:
        raise DemoFailed(f"cannot load {folder / 'manifest.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(message: str) -> None:
    click.echo(click.style("▸ ", fg="cyan") + message, err=True)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@click.command("demo")
@click.option("--no-console", is_flag=True, help="Run headless until Ctrl-C.")
@click.option(
    "--listen",
    default="127.0.0.1:7400",
    show_default=True,
    help="API address of the demo's daemon (a free port if this one is taken).",
)
@click.option(
    "--instances",
    default=DEFAULT_INSTANCES,
    show_default=True,
    help="How many instances of each service to start.",
)
@click.option(
    "--chaos/--no-chaos",
    default=True,
    show_default=True,
    help="Now and then make an instance fail its health checks, or a service fail its "
    "calls, for a while.",
)
@click.option(
    "--saga-interval",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds between the booking sagas the demo starts (0: none).",
)
@click.pass_context
def demo(
    ctx: click.Context,
    no_console: bool,
    listen: str,
    instances: str,
    chaos: bool,
    saga_interval: float,
) -> None:
    """Start a local wedding platform under orch and open the console."""
    settings = settings_from(ctx)
    asyncio.run(
        run_demo(
            settings,
            console=not no_console,
            listen=listen,
            instances=instances,
            chaos=chaos,
            saga_interval=saga_interval,
        )
    )


async def run_demo(
    settings: Settings,
    *,
    console: bool,
    listen: str,
    instances: str,
    chaos: bool,
    saga_interval: float = 3.0,
) -> None:
    started = time.monotonic()
    folder = examples_dir()
    log_dir = settings.data_dir / "demo"
    if settings.database_url:
        step("using the database at ORCH_DATABASE_URL/--dsn")
    else:
        step(f"starting the embedded PostgreSQL in {settings.data_dir}")
    # A setup command: the demo's database is migrated here, as the daemon it starts would.
    orch = await Orch.open(settings, schema=SchemaMode.MIGRATE)
    try:
        knobs = f"notification:event_reject_rate={EVENT_REJECT_RATE}" if chaos else None
        async with _platform(folder, instances, log_dir, knobs) as platform_instances:
            await _register(orch, folder, platform_instances)
            async with _daemon(settings, listen, log_dir) as api_address:
                step(
                    f"ready in {time.monotonic() - started:.1f}s — API on http://{api_address}, "
                    f"logs in {log_dir}"
                )
                background = []
                if chaos:
                    background.append(asyncio.create_task(_chaos(platform_instances)))
                if saga_interval > 0:
                    initiator = str(load_manifest(folder).INITIATOR)
                    background.append(
                        asyncio.create_task(_saga_stream(orch, saga_interval, initiator))
                    )
                try:
                    if console:
                        await _run_console(orch)
                    else:
                        step("running headless; Ctrl-C stops everything")
                        await _until_interrupted()
                finally:
                    for task in background:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                    step("stopping: deregistering the demo's instances")
                    await _deregister(orch, platform_instances)
                    step("stopping the daemon")
            step("stopping the example platform")
    finally:
        await orch.close()
        step("stopped")


@contextlib.asynccontextmanager
async def _platform(
    folder: Path, instances: str, log_dir: Path, knobs: str | None = None
) -> AsyncIterator[list[DemoInstance]]:
    step(f"starting the example wedding platform ({instances})")
    command = [
        sys.executable,
        str(folder / "platform.py"),
        "--host",
        "127.0.0.1",
        "--instances",
        instances,
        "--base-port",
        "0",
    ]
    if knobs:
        command += ["--knobs", knobs]
    child = await ChildProcess.spawn(
        "platform",
        command,
        log_path=log_dir / "platform.log",
        stdout_pipe=True,
    )
    try:
        found = await asyncio.wait_for(_read_platform_ready(child), timeout=60)
        step(f"platform up (pid {child.process.pid})")
        yield found
    except TimeoutError:
        raise DemoFailed(f"the example platform did not start in 60s:\n{child.tail()}") from None
    finally:
        await child.stop()


async def _read_platform_ready(child: ChildProcess) -> list[DemoInstance]:
    assert child.process.stdout is not None
    found: list[DemoInstance] = []
    while True:
        line = await child.process.stdout.readline()
        if not line:
            raise DemoFailed(f"the example platform exited early:\n{child.tail()}")
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if message.get("ready"):
            return found
        if "instance_id" in message:
            found.append(
                DemoInstance(
                    message["service"],
                    message["instance_id"],
                    message["host"],
                    int(message["port"]),
                    str(message.get("version", "1.0.0")),
                )
            )


async def _register(orch: Orch, folder: Path, instances: list[DemoInstance]) -> None:
    manifest = load_manifest(folder)
    registrations: list[dict[str, Any]] = manifest.registrations()
    queues: list[dict[str, Any]] = getattr(manifest, "queue_registrations", list)()
    step(
        f"registering {len(registrations)} services, {len(instances)} instances and "
        f"{len(queues)} queue{'s' if len(queues) != 1 else ''}"
    )
    for request in registrations:
        try:
            await orch.registry.register_service(request, actor=DEMO_ACTOR)
        except ConflictError:
            update = {k: v for k, v in request.items() if k != "service_name"}
            await orch.registry.update_service(request["service_name"], update, actor=DEMO_ACTOR)
    for queue in queues:
        try:
            await orch.bus.create_queue(queue, actor=DEMO_ACTOR)
        except ConflictError:  # from an earlier run: bring its settings up to date
            update = {
                k: v
                for k, v in queue.items()
                if k not in ("queue_name", "queue_type", "dlq_enabled")
            }
            await orch.bus.update_queue(queue["queue_name"], update, actor=DEMO_ACTOR)
            current = await orch.bus.get_queue(queue["queue_name"])
            if not current.is_active:
                await orch.bus.reactivate_queue(
                    queue["queue_name"], actor=DEMO_ACTOR, reason="the demo publishes to it"
                )
    booking = folder / "full_service_booking.yaml"
    if booking.is_file():
        import yaml

        await orch.workflow_definitions.register(
            yaml.safe_load(booking.read_text()), actor=DEMO_ACTOR
        )
    for inst in instances:
        await orch.registry.register_instance(
            inst.service,
            {
                "instance_id": inst.instance_id,
                "node_name": socket.gethostname(),
                "ip_address": inst.host,
                "port": inst.port,
                "version": inst.version,
            },
            actor=DEMO_ACTOR,
        )


async def _deregister(orch: Orch, instances: list[DemoInstance]) -> None:
    for inst in instances:
        with contextlib.suppress(OrchError):
            await orch.registry.deregister_instance(
                inst.service, inst.instance_id, actor=DEMO_ACTOR, reason="demo stopped"
            )


@contextlib.asynccontextmanager
async def _daemon(settings: Settings, listen: str, log_dir: Path) -> AsyncIterator[str]:
    host, _, port = listen.rpartition(":")
    if not port_is_free(host, int(port)):
        step(f"{listen} is taken; the daemon listens on a free port instead")
        listen = f"{host}:0"
    env = {"ORCH_DATA_DIR": str(settings.data_dir), "ORCH_LOG_FORMAT": "json"}
    if settings.database_url:
        env["ORCH_DATABASE_URL"] = settings.database_url
    step("starting a daemon (health checks, workflows, push delivery, HTTP API)")
    child = await ChildProcess.spawn(
        "daemon",
        [
            sys.executable,
            "-m",
            "orchcore.cli.main",
            "daemon",
            "--listen",
            listen,
            "--name",
            "demo-daemon",
        ],
        log_path=log_dir / "daemon.log",
        env=env,
    )
    try:
        address = await _wait_for_daemon(child, listen)
        step(f"daemon up (pid {child.process.pid})")
        yield address
    finally:
        await child.stop()


async def _wait_for_daemon(child: ChildProcess, listen: str, timeout: float = 60) -> str:
    """Poll the daemon's membership announcement in its log for the bound address."""
    deadline = time.monotonic() + timeout
    offset = child.log_path.stat().st_size if child.log_path.exists() else 0
    while time.monotonic() < deadline:
        if not child.running:
            raise DemoFailed(f"the daemon exited during start-up:\n{child.tail()}")
        address = _announced_address(child.log_path, offset)
        if address is not None:
            async with httpx.AsyncClient() as client:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://{address}/readyz", timeout=1)).status_code == 200:
                        return address
        await asyncio.sleep(0.1)
    raise DemoFailed(f"the daemon did not become ready in {timeout:.0f}s:\n{child.tail()}")


def _announced_address(log_path: Path, offset: int) -> str | None:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            for line in log:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == "daemon started" and entry.get("listen"):
                        return str(entry["listen"])
    except OSError:
        return None
    return None


async def _chaos(instances: list[DemoInstance]) -> None:
    """Every so often trouble, then recovery: an instance fails its health checks, or
    every instance of a service fails most business calls (retries, breakers open)."""
    rng = random.Random()
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            await asyncio.sleep(rng.uniform(15, 30))
            if rng.random() < 0.5:
                victims = [rng.choice(instances)]
                trouble: dict[str, object] = {"health": "fail"}
                calm: dict[str, object] = {"health": "ok"}
            else:
                service = rng.choice(sorted({i.service for i in instances}))
                victims = [i for i in instances if i.service == service]
                trouble, calm = {"failure_rate": 0.8}, {"failure_rate": 0.0}
            with contextlib.suppress(httpx.HTTPError):
                for victim in victims:
                    await client.post(f"http://{victim.host}:{victim.port}/_knobs", json=trouble)
                await asyncio.sleep(rng.uniform(10, 20))
                for victim in victims:
                    await client.post(f"http://{victim.host}:{victim.port}/_knobs", json=calm)


async def _saga_stream(orch: Orch, interval: float, initiator: str) -> None:
    """A steady stream of full-service bookings; some fail on purpose (a declined card,
    a fully booked photographer) so compensations show."""
    rng = random.Random()
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * interval)
        declined = rng.random() < 0.1
        wedding_id = uuid.uuid4()
        context = {
            "wedding_id": str(wedding_id),
            "date": f"2027-{rng.randint(5, 9):02d}-{rng.randint(1, 28):02d}",
            "guests": rng.randint(40, 220),
            "venue_id": f"venue-{rng.randint(1, 400)}",
            "menu": rng.choice(["classic", "vegetarian", "vegan", "premium"]),
            "package": rng.choice(["essential", "classic", "signature"]),
            "deposit_cents": 9_000_000 if declined else rng.randint(50, 400) * 1000,
            "currency": "EUR",
            "channel": rng.choice(["email", "sms"]),
            "confirmation_template": "booking_confirmed",
        }
        with contextlib.suppress(OrchError):
            await orch.workflows.start(
                {
                    "workflow_name": "full-service-booking",
                    "wedding_id": str(wedding_id),
                    "initiating_service": initiator,
                    "correlation_id": f"demo-{uuid.uuid4().hex[:12]}",
                    "context_data": context,
                },
                actor=DEMO_ACTOR,
            )


async def _run_console(orch: Orch) -> None:
    from orchtui.app import OrchConsole

    app = OrchConsole(orch, readonly=False)
    await app.run_async()


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
