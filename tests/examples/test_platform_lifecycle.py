"""Starting and stopping the platform: signals, start-up flags, the installed layout."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.examples.platform_process import (
    PLATFORM_SCRIPT,
    WEDDING_DIR,
    PlatformProcess,
    pid_exists,
    running_platform,
)


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.01)


def charge_statuses(base_url: str, n: int) -> list[int]:
    body = {"wedding_id": "w", "amount_cents": 100, "currency": "EUR"}
    with httpx.Client(timeout=5.0) as client:
        return [client.post(f"{base_url}/charges", json=body).status_code for _ in range(n)]


def test_sigterm_stops_every_server_even_with_a_request_hanging() -> None:
    with running_platform(
        "--instances", "venue=2,payment=1", "--knobs", "payment-1:hang=true"
    ) as platform:
        assert platform.children() == []  # every instance lives in this one process
        payment = platform.url("payment-1")
        body = {"wedding_id": "w", "amount_cents": 100, "currency": "EUR"}
        with ThreadPoolExecutor(1) as pool:
            hanging = pool.submit(httpx.post, f"{payment}/charges", json=body, timeout=30)
            wait_until(lambda: httpx.get(f"{payment}/_stats").json()["calls"] == 1)

            assert platform.terminate() == 0

            assert hanging.result(timeout=5).status_code == 503
        assert not pid_exists(platform.process.pid)
        assert all(port_is_closed(a.port) for a in platform.instances.values())


def test_sigint_stops_cleanly_too() -> None:
    with running_platform("--instances", "notification=1") as platform:
        platform.process.send_signal(signal.SIGINT)
        assert platform.wait_exit() == 0


def test_startup_knobs_apply_to_an_instance_or_a_whole_service() -> None:
    knobs = "venue:latency_ms=5,venue-2:health=fail,catering-1:failure_rate=1"
    with running_platform("--instances", "venue=2,catering=1", "--knobs", knobs) as platform:
        with httpx.Client(timeout=5.0) as client:
            venue_1 = client.get(f"{platform.url('venue-1')}/_knobs").json()
            venue_2 = client.get(f"{platform.url('venue-2')}/_knobs").json()
            order = {"wedding_id": "w", "menu": "classic", "guests": 1}
            failed = client.post(f"{platform.url('catering-1')}/orders", json=order)
        assert (venue_1["latency_ms"], venue_1["health"]) == (5, "ok")
        assert (venue_2["latency_ms"], venue_2["health"]) == (5, "fail")
        assert failed.status_code == 503


def test_same_seed_repeats_failures_and_ids() -> None:
    args = ("--instances", "payment=1", "--seed", "9", "--knobs", "payment-1:failure_rate=0.5")
    first, second = PlatformProcess.launch(*args), PlatformProcess.launch(*args)
    try:
        runs = [charge_statuses(p.wait_ready().url("payment-1"), 30) for p in (first, second)]
    finally:
        first.close()
        second.close()
    assert runs[0] == runs[1]
    assert {201, 503} <= set(runs[0])


def test_runs_from_the_installed_wheel_layout(tmp_path: Path) -> None:
    """The wheel ships the folder as orchcore/examples/wedding; run it from there."""
    installed = tmp_path / "site-packages" / "orchcore" / "examples" / "wedding"
    shutil.copytree(WEDDING_DIR, installed, ignore=shutil.ignore_patterns("__pycache__"))
    with running_platform(
        "--instances", "notification=1", script=installed / "platform.py", cwd=tmp_path
    ) as platform:
        health = httpx.get(f"{platform.url('notification-1')}/health", timeout=5)
        assert health.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--instances", "dragon=1"], "unknown service 'dragon'"),
        (["--instances", "venue=lots"], "not SERVICE=COUNT"),
        (["--instances", "venue=1", "--knobs", "venue-9:hang=true"], "no instance or service"),
        (["--instances", "venue=1", "--knobs", "venue:failure_rate=3"], "venue:failure_rate"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], reason: str) -> None:
    done = subprocess.run(
        [sys.executable, str(PLATFORM_SCRIPT), *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert reason in done.stderr


def test_a_taken_port_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                str(PLATFORM_SCRIPT),
                "--instances",
                "venue=1",
                "--base-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert "cannot listen" in done.stderr
