"""Run every instance as its own uvicorn server, all in one process and one event loop.

Prints one JSON line per instance once all are listening, then ``{"ready": true}``;
on SIGTERM or SIGINT stops every server and exits 0. Usage errors exit 2 with one
line on stderr; a port that cannot be bound exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from manifest import DEFAULT_INSTANCES, SERVICE_VERSIONS
from wedding_app import InstanceContext, ServiceState, instance_app, service_state
from wedding_faults import FaultInjector, KnobsUpdate, parse_knob_settings

#: How long all servers may take to start listening.
STARTUP_SECONDS = 15.0
#: How long a stopping server waits for requests in progress before cancelling them.
GRACEFUL_SHUTDOWN_SECONDS = 2


class UsageError(Exception):
    """A bad command line; the message is the one line shown."""


class PlatformServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the platform.

    uvicorn's own handlers assume one server a process; here many share one, and
    the platform stops them all together.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # the name in uvicorn before 0.29
        return


@dataclass
class PlannedInstance:
    service: str
    instance_id: str


@dataclass
class RunningInstance:
    context: InstanceContext
    sock: socket.socket
    server: PlatformServer
    task: asyncio.Task[None] | None = None

    @property
    def announcement(self) -> dict[str, object]:
        host, port = self.sock.getsockname()[:2]
        return {
            "service": self.context.service.name,
            "instance_id": self.context.instance_id,
            "host": host,
            "port": port,
            "version": self.context.service.version,
        }


# -- command line ------------------------------------------------------------------------


def parse_instances(spec: str) -> list[PlannedInstance]:
    """``venue=2,catering=1`` -> venue-1, venue-2, catering-1 (in the order given)."""
    planned: list[PlannedInstance] = []
    seen: set[str] = set()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        service, equals, count = item.partition("=")
        service = service.strip()
        if service not in SERVICE_VERSIONS:
            known = ", ".join(SERVICE_VERSIONS)
            raise UsageError(f"--instances: unknown service {service!r} (known: {known})")
        if service in seen:
            raise UsageError(f"--instances: {service} is given twice")
        seen.add(service)
        if not equals or not count.strip().isdigit() or int(count) > 50:
            raise UsageError(f"--instances: {item!r} is not SERVICE=COUNT with COUNT 0..50")
        planned += [PlannedInstance(service, f"{service}-{n}") for n in range(1, int(count) + 1)]
    if not planned:
        raise UsageError("--instances: no instance to run")
    return planned


def knobs_per_instance(
    spec: str | None, planned: Sequence[PlannedInstance]
) -> dict[str, list[KnobsUpdate]]:
    """Start-up knobs by instance id; a service name as target means all its instances."""
    if not spec:
        return {}
    try:
        changes = parse_knob_settings(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result: dict[str, list[KnobsUpdate]] = {}
    for target, change in changes.items():
        matching = [p for p in planned if target in (p.instance_id, p.service)]
        if not matching:
            raise UsageError(f"--knobs: no instance or service {target!r} is running")
        for p in matching:
            result.setdefault(p.instance_id, []).append(change)
    return result


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="platform.py",
        description="The example wedding platform: booking, venue, catering, photographer, "
        "payment and notification services, each instance on its own loopback port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--instances",
        default=DEFAULT_INSTANCES,
        help=f"SERVICE=COUNT,... (default {DEFAULT_INSTANCES})",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=0,
        help="first port, the next instances take the following ones; 0 picks free ports",
    )
    parser.add_argument(
        "--knobs",
        help="start-up faults, TARGET:KNOB=VALUE,... with TARGET an instance id or service "
        "and KNOB one of health, latency_ms, failure_rate, hang",
    )
    parser.add_argument("--seed", type=int, help="make failures and ids reproducible")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="log level of the servers' logs on stderr (access logs from debug)",
    )
    return parser


# -- assembly --------------------------------------------------------------------------------


def seeded_rng(seed: int | None, purpose: str) -> random.Random:
    """One generator a purpose, so one instance's traffic never shifts another's draws."""
    return random.Random(f"{seed}/{purpose}") if seed is not None else random.Random()


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for one instance, so its port is known before it serves.

    The protocol is named explicitly: asyncio sets TCP_NODELAY only on sockets
    whose proto is IPPROTO_TCP, and without it every keep-alive answer waits
    ~40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def assemble(
    options: argparse.Namespace, planned: Sequence[PlannedInstance], stopping: asyncio.Event
) -> list[RunningInstance]:
    """Build every instance's app and bind its port (raising OSError if one is taken)."""
    start_knobs = knobs_per_instance(options.knobs, planned)
    states: dict[str, ServiceState] = {}
    instances: list[RunningInstance] = []
    try:
        for index, plan in enumerate(planned):
            if plan.service not in states:
                version = SERVICE_VERSIONS[plan.service]
                ids = seeded_rng(options.seed, f"{plan.service}/ids")
                states[plan.service] = service_state(plan.service, version, ids)
            faults = FaultInjector(seeded_rng(options.seed, plan.instance_id), stopping)
            for change in start_knobs.get(plan.instance_id, []):
                faults.update(change)
            context = InstanceContext(states[plan.service], plan.instance_id, faults)
            port = options.base_port + index if options.base_port else 0
            sock = bind_socket(options.host, port)
            instances.append(RunningInstance(context, sock, server_for(context, options)))
    except BaseException:
        for instance in instances:
            instance.sock.close()
        raise
    return instances


def server_for(context: InstanceContext, options: argparse.Namespace) -> PlatformServer:
    config = uvicorn.Config(
        instance_app(context),
        lifespan="off",
        log_config=None,
        log_level=options.log_level,
        access_log=options.log_level in ("debug", "trace"),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return PlatformServer(config)


# -- running ---------------------------------------------------------------------------------


async def wait_until_listening(instances: Sequence[RunningInstance]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    while not all(i.server.started for i in instances):
        for instance in instances:
            if instance.task is not None and instance.task.done():
                instance.task.result()  # raises what stopped it
                raise RuntimeError(f"{instance.context.instance_id} stopped while starting")
        if loop.time() > deadline:
            raise TimeoutError(f"servers not listening after {STARTUP_SECONDS}s")
        await asyncio.sleep(0.01)


def announce(instances: Sequence[RunningInstance]) -> None:
    for instance in instances:
        print(json.dumps(instance.announcement), flush=True)
    print(json.dumps({"ready": True}), flush=True)


async def serve_until_stopped(
    instances: Sequence[RunningInstance], stopping: asyncio.Event
) -> None:
    for instance in instances:
        instance.task = asyncio.create_task(
            instance.server.serve(sockets=[instance.sock]), name=instance.context.instance_id
        )
    try:
        await wait_until_listening(instances)
        announce(instances)
        tasks = [i.task for i in instances if i.task is not None]
        stop_wait = asyncio.create_task(stopping.wait())
        # A server ending by itself is a failure; normally only the signal ends this wait.
        await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
    finally:
        stopping.set()  # releases hanging and delayed requests
        for instance in instances:
            instance.server.should_exit = True
        await asyncio.gather(*(i.task for i in instances if i.task is not None))


async def run_platform(options: argparse.Namespace) -> int:
    planned = parse_instances(options.instances)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        instances = assemble(options, planned, stopping)
    except OSError as exc:
        print(f"platform.py: cannot listen on {options.host}: {exc.strerror}", file=sys.stderr)
        return 1
    await serve_until_stopped(instances, stopping)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = argument_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(run_platform(options))
    except UsageError as exc:
        print(f"platform.py: {exc}", file=sys.stderr)
        return 2
