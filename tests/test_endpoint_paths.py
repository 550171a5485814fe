"""Endpoints in one normal form: what authorization matches is what the service receives."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchcore import Orch
from orchcore.callpath import CallDenied, InvalidCallError
from orchcore.callpath.endpoints import MAX_ENDPOINT_LENGTH, CallEndpoint, normalize_endpoint
from orchcore.callpath.headers import check_method, outbound_headers
from orchcore.saga.paths import path_segment, render
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service

# -- the normal form, without a database ----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "path", "query"),
    [
        ("/reservations/r-1", "/reservations/r-1", ""),
        ("reservations", "/reservations", ""),
        ("", "/", ""),
        ("/reservations/", "/reservations/", ""),
        ("/payments/%72efund", "/payments/refund", ""),
        ("/a/%7e%41%2d%5F", "/a/~A-_", ""),
        ("/a/b%2fc", "/a/b%2Fc", ""),
        ("/a/%c3%a9", "/a/%C3%A9", ""),
        ("/a/é", "/a/%C3%A9", ""),
        ("/a/x y", "/a/x%20y", ""),
        ("/a/[1]", "/a/%5B1%5D", ""),
        ("/a/.well-known/v1..2", "/a/.well-known/v1..2", ""),
        ("/a/!$&'()*+,;=:@", "/a/!$&'()*+,;=:@", ""),
        ("/search?q=../x&n=1", "/search", "q=../x&n=1"),
        ("/search?", "/search", ""),
    ],
)
def test_normal_form(given: str, path: str, query: str) -> None:
    assert normalize_endpoint(given) == CallEndpoint(path, query)


@pytest.mark.parametrize(
    "given",
    ["/reservations/r-1", "/payments/%72efund", "/a/%c3%a9", "/a/x y", "/a/b%2fc", "/a/[1]"],
)
def test_httpx_sends_the_normal_form_unchanged(given: str) -> None:
    """The path authorization saw is byte for byte the path on the wire."""
    target = normalize_endpoint(given).target
    assert httpx.URL("http://127.0.0.1:1" + target).raw_path == target.encode("ascii")


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("/reservations/../payments/refund", "dot segment ('..')"),
        ("/reservations/./x", "dot segment ('.')"),
        ("/reservations/..", "dot segment ('..')"),
        ("/reservations/%2e%2e/payments/refund", "dot segment ('..')"),
        ("/reservations/%2E%2E/payments/refund", "dot segment ('..')"),
        ("/reservations/.%2e/payments", "dot segment ('..')"),
        ("/reservations/%2e", "dot segment ('.')"),
        ("/reservations/x%2F..%2Fpayments", "dot segment ('..')"),
        ("/reservations/..%5Cpayments", "dot segment ('..')"),
        ("/reservations//x", "empty segment"),
        ("//evil.example/x", "empty segment"),
        ("http://evil.example/x", "empty segment"),
        ("/reservations\\..\\payments", "backslash"),
        ("/reservations/x#frag", "'#'"),
        ("/reservations/x\r\nHost: evil", "control character"),
        ("/reservations/x\x00", "control character"),
        ("/search?q=a\nb", "control character"),
        ("/reservations/%0d%0a", "encoded control character (%0D)"),
        ("/reservations/%zz", "malformed percent-escape"),
        ("/reservations/%4", "malformed percent-escape"),
        ("/reservations/\ud800", "UTF-8 can encode"),
        ("/x" * MAX_ENDPOINT_LENGTH, "longer than"),
    ],
)
def test_what_has_no_single_meaning_is_refused(given: str, reason: str) -> None:
    with pytest.raises(InvalidCallError) as caught:
        normalize_endpoint(given)
    error = caught.value
    assert reason in str(error)
    assert str(error).startswith("endpoint: ")
    assert "\n" not in str(error)  # one line, whatever the endpoint held
    assert (error.http_status, error.field) == (422, "endpoint")
    assert isinstance(error, CallDenied)  # permanent: a saga step fails, it does not retry
    assert error.to_dict()["detail"][0]["loc"] == ["endpoint"]


def test_header_values_that_would_break_the_request_are_refused() -> None:
    with pytest.raises(InvalidCallError, match=r"correlation_id: .* holds a line break"):
        outbound_headers(None, "wedding-42\r\nX-Admin: yes", None)
    with pytest.raises(InvalidCallError, match=r"idempotency_key: .* holds the character 'ł'"):
        outbound_headers(None, "c-1", "klucz-ł")
    with pytest.raises(InvalidCallError, match=r"headers\.X-Note: .* holds a line break"):
        outbound_headers({"X-Note": "a\nb"}, "c-1", None)
    with pytest.raises(InvalidCallError, match="headers: 'Bad Name' is not a valid header name"):
        outbound_headers({"Bad Name": "x"}, "c-1", None)
    with pytest.raises(InvalidCallError, match="method: 'GET /admin' is not an HTTP method"):
        check_method("GET /admin")
    sent = outbound_headers({"X-Note": "café\tau lait"}, "c-1", "k-1")
    assert sent == {"X-Note": "café\tau lait", "X-Correlation-ID": "c-1", "Idempotency-Key": "k-1"}
    assert check_method("patch") == "PATCH"


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("r-1", "r-1"),
        (42, "42"),
        ("../payments/refund", "..%2Fpayments%2Frefund"),
        ("a?b#c%d", "a%3Fb%23c%25d"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("x y", "x%20y"),
    ],
)
def test_a_context_value_is_one_path_segment(value: Any, segment: str) -> None:
    assert path_segment(value) == segment
    endpoint = render("/reservations/{venue.id}/cancel", {"venue": {"id": value}})
    assert endpoint == f"/reservations/{segment}/cancel"


def test_a_rendered_value_can_never_leave_its_segment() -> None:
    """A value naming another path is either one harmless segment or refused."""
    for value in ("../payments/refund", "..", ".", "%2e%2e", "x/../../payments"):
        endpoint = render("/reservations/{id}", {"id": value})
        try:
            normal = normalize_endpoint(endpoint)
        except InvalidCallError:
            continue
        assert normal.path.startswith("/reservations/")
        assert normal.path.count("/") == 2


# -- through the call path -------------------------------------------------------------------


async def security_policy(orch: Orch, name: str, action: str, endpoints: list[str]) -> None:
    await orch.mesh.create(
        {
            "policy_name": name,
            "policy_type": "security",
            "target_services": ["venue"],
            "policy_config": {
                "authorization": {
                    "action": action,
                    "rules": [{"from": ["*"], "to": ["venue"], "when": {"endpoint": endpoints}}],
                }
            },
        },
        actor="t",
    )


@pytest.fixture
async def venue(orch: Orch, http_server: SwitchableServer) -> SwitchableServer:
    await healthy_service(orch, "venue", [http_server])
    await known_callers(orch, "booking")
    return http_server


async def test_a_dot_segment_never_passes_an_allow_rule_for_another_path(
    orch: Orch, venue: SwitchableServer
) -> None:
    await security_policy(orch, "reservations-only", "allow", ["/reservations/*"])
    caller = await orch.caller()
    for sneaky in (
        "/reservations/../payments/refund",
        "/reservations/%2e%2e/payments/refund",
        "/reservations/x%2F..%2F..%2Fpayments%2Frefund",
    ):
        with pytest.raises(InvalidCallError, match="dot segment"):
            await caller.call("booking", "venue", sneaky, method="POST", json={})
    assert venue.requests == []  # refused before anything was sent
    assert (await caller.call("booking", "venue", "/reservations/r-1", method="GET")).ok
    with pytest.raises(CallDenied, match="no allow rule of reservations-only"):
        await caller.call("booking", "venue", "/payments/refund", method="POST", json={})
    assert [r.path for r in venue.requests] == ["/reservations/r-1"]


async def test_a_deny_rule_sees_through_percent_encoding_and_query_strings(
    orch: Orch, venue: SwitchableServer
) -> None:
    await security_policy(orch, "no-refunds", "deny", ["/payments/refund"])
    caller = await orch.caller()
    for disguised in ("/payments/%72efund", "/payments/refund?via=reservations", "payments/refund"):
        with pytest.raises(CallDenied, match="denied by policy no-refunds"):
            await caller.call("booking", "venue", disguised, method="GET")
    with pytest.raises(InvalidCallError, match="dot segment"):
        await caller.call("booking", "venue", "/reservations/../payments/refund", method="GET")
    assert venue.requests == []
    answered = await caller.call(
        "booking", "venue", "/payments/%73tatus?since=%2e%2e", method="GET"
    )
    assert answered.ok
    assert venue.requests[-1].path == "/payments/status?since=%2e%2e"  # the query as given


async def test_a_bad_correlation_id_is_refused_before_anything_is_sent(
    orch: Orch, venue: SwitchableServer
) -> None:
    caller = await orch.caller()
    with pytest.raises(InvalidCallError, match="correlation_id"):
        await caller.call(
            "booking", "venue", "/x", method="GET", correlation_id="c-1\r\nX-Injected: 1"
        )
    with pytest.raises(InvalidCallError, match="idempotency_key"):
        await caller.call("booking", "venue", "/x", json={}, idempotency_key="ключ")
    assert venue.requests == []
