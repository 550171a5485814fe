from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.examples.platform_process import PlatformProcess, running_platform

#: What the demo runs; one platform is shared by a module's tests to keep them fast.
DEMO_INSTANCES = "venue=2,catering=1,photographer=2,payment=1,notification=1"


@pytest.fixture(scope="module")
def wedding() -> Iterator[PlatformProcess]:
    with running_platform("--instances", DEMO_INSTANCES, "--seed", "42") as platform:
        yield platform


@pytest.fixture
def client(wedding: PlatformProcess) -> Iterator[httpx.Client]:
    """An HTTP client; afterwards every instance's knobs are back to well-behaved."""
    with httpx.Client(timeout=5.0) as http:
        yield http
        for instance in wedding.instances.values():
            http.delete(f"{instance.base_url}/_knobs").raise_for_status()
