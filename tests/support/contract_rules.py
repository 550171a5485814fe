"""The rules orch enforces that its OpenAPI document cannot state, for the fuzz run of
tests/test_api_contract.py (loaded by schemathesis as ``SCHEMATHESIS_HOOKS``).

A request the schema calls valid may still be refused, but only by one of these rules:
each is named, with the status and the refusal's message that show it. Every other
failure of every check stands. A refusal a rule explains is written, one JSON line
each, to the file ``ORCH_CONTRACT_RULES_LOG`` names, so the test can tell which rules
the run met.

One thing the run changes in what it sends: a long poll (``receive`` with
``wait_seconds``) waits as long as it is asked, up to a minute, which is no defect but
would take the run's time; a valid wait is shortened to at most ``LONGEST_POLL``
seconds (still valid, so no check sees a different case than the one sent). Likewise
the event stream (``GET /api/orchestration/events``) lasts until the client goes, so a
request of it without a valid ``max_seconds`` gets ``max_seconds=LONGEST_POLL`` (an
optional parameter the schema declares; the stream then ends by itself, as documented).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData


@dataclass(frozen=True)
class Rule:
    """A rule JSON Schema cannot state, and how its refusal reads."""

    name: str
    why_not_in_the_schema: str
    status: int
    message: re.Pattern[str]


def _rule(name: str, why: str, status: int, message: str) -> Rule:
    return Rule(name, why, status, re.compile(message))


ACROSS_FIELDS = "it relates two fields (JSON Schema compares no values)"
STORED_STATE = "it depends on what is stored, not on the request"
OUTSIDE_JSON = "it is about bytes JSON Schema does not see"

RULES: tuple[Rule, ...] = (
    _rule(
        "traffic-split weights add up to 100",
        "JSON Schema cannot sum values",
        422,
        r"route weights must add up to 100",
    ),
    _rule(
        "each traffic-split destination appears in one route only",
        "uniqueItems compares whole routes, not one field of them",
        422,
        r"each destination may appear in one route only",
    ),
    _rule(
        "a mesh policy's sections fit its policy_type, and it has one",
        ACROSS_FIELDS + "; null sections count as absent",
        422,
        r"policy_config(\.\w+)?: (give at least one section|not a \w+ setting)",
    ),
    _rule(
        "a health check's timings are coherent (timeout within interval, critical "
        "before deregistration)",
        ACROSS_FIELDS,
        422,
        r"(timeout_seconds must not exceed interval_seconds|critical_after_seconds must "
        r"not exceed deregister_critical_after_seconds)",
    ),
    _rule(
        "max_replicas is at least min_replicas",
        ACROSS_FIELDS,
        422,
        r"max_replicas must be at least min_replicas",
    ),
    _rule(
        "a service does not depend on itself",
        ACROSS_FIELDS,
        422,
        r"a service cannot depend on itself",
    ),
    _rule(
        "a trace search's end_time is after its start_time",
        ACROSS_FIELDS,
        422,
        r"end_time: must be after start_time",
    ),
    _rule(
        "trace search tags are a JSON object of strings",
        "the query parameter holds JSON text, which JSON Schema sees as a string",
        422,
        r"tags: expected a JSON object",
    ),
    _rule(
        "a message id fits PGMQ's bigint (at most 2**63 - 1)",
        "a pattern cannot bound a number written in digits",
        422,
        r"message_ids?(\.\d+)?: not a PGMQ message id",
    ),
    _rule(
        "a message's ttl_seconds exceeds its delay_seconds",
        ACROSS_FIELDS,
        422,
        r"ttl_seconds: must exceed delay_seconds",
    ),
    _rule(
        "a message fits its queue's max_message_size",
        STORED_STATE,
        413,
        r"over the limit of queue",
    ),
    _rule(
        "a topic's message_pattern is a routing-key pattern PGMQ accepts",
        "PGMQ checks it, in the database, by its own grammar",
        422,
        r"message_pattern: ",
    ),
    _rule(
        "text holds no NUL character (U+0000), which PostgreSQL cannot store",
        "it holds for every string of every operation: a pattern on each would bury the schema",
        422,
        r"(text may not contain the NUL character|contains \\u0000, which PostgreSQL)",
    ),
    _rule(
        "a call's endpoint has one meaning (no dot or empty segments, well-formed "
        "percent-escapes, UTF-8 text)",
        "what a path means after normalisation is beyond a pattern",
        422,
        r"endpoint: .*(dot segment|empty segment|percent-escape|UTF-8|control character)",
    ),
    _rule(
        "a batch's messages name the batch's queue, or none",
        ACROSS_FIELDS,
        422,
        r"messages\.\d+\.queue_name: a batch goes to one queue",
    ),
    _rule(
        "a workflow's initiating_service is a registered service",
        STORED_STATE,
        422,
        r"initiating_service: .* is not a registered service",
    ),
    _rule(
        "a batch compensation gives a reason",
        "the action is in the path, the reason in the body",
        422,
        r"reason: compensating needs a reason",
    ),
    _rule(
        "a batch confirmed (dry_run false) names the workflow_ids its preview returned, "
        "no more than its limit",
        ACROSS_FIELDS,
        422,
        r"workflow_ids: (confirm a batch with the workflow_ids|at most \d+ in one batch)",
    ),
    _rule(
        "a compensation with strategy custom names its steps",
        ACROSS_FIELDS,
        422,
        r"custom_steps: strategy custom names the steps",
    ),
    _rule(
        "a workflow step's fields fit its type",
        ACROSS_FIELDS,
        422,
        r"steps\.\d+: ",
    ),
    _rule(
        "a workflow list's after is a next_cursor the list gave",
        "a cursor is opaque: its shape is the engine's to change, and a pattern could not "
        "tell a real instant from a month 13",
        422,
        r"^after: not a cursor",
    ),
    _rule(
        "a workflow list takes offset or after, not both",
        ACROSS_FIELDS,
        422,
        r"^offset: give offset or after, not both",
    ),
    _rule(
        "an OTLP/HTTP body is an ExportTraceServiceRequest (protobuf, or its JSON mapping)",
        OUTSIDE_JSON + "; OTLP's protobuf schema is not restated in JSON Schema",
        400,
        r".",
    ),
)


def rule_for(status: int, body: Any) -> Rule | None:
    """The rule a refusal with this status and body shows, if any."""
    message = _message(body)
    for rule in RULES:
        if rule.status == status and rule.message.search(message):
            return rule
    return None


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message", ""))
    return ""


def _body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


#: The longest long poll the run asks for, in seconds.
LONGEST_POLL = 0.2


EVENTS_PATH = "/api/orchestration/events"


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Shorten a valid long-poll wait, bound an event stream (see the module's docstring)."""
    if case.path == EVENTS_PATH:
        _bound_the_stream(case)
        return
    body = case.body
    if not (case.path.endswith("/receive") and isinstance(body, dict)):
        return
    wait = body.get("wait_seconds")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and LONGEST_POLL < wait <= 60:
        body["wait_seconds"] = LONGEST_POLL


def _bound_the_stream(case: Any) -> None:
    query = case.query if isinstance(case.query, dict) else {}
    given = query.get("max_seconds")
    try:
        valid = given is None or 0 < float(given) <= 86_400
    except (TypeError, ValueError):
        valid = False  # a negative case: refused with 422 before any stream starts
    if valid:
        case.query = {**query, "max_seconds": LONGEST_POLL}


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a schema-valid request refused by a named rule."""
    if not isinstance(failure, RejectedPositiveData):
        return True
    if case.path == "/v1/traces":
        # OTLP answers in its own encoding: a google.rpc.Status, JSON or protobuf.
        rule = RULES[-1] if response.status_code == 400 else None
    else:
        rule = rule_for(response.status_code, _body(response))
    if rule is None:
        return True
    log = os.environ.get("ORCH_CONTRACT_RULES_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            line = {"rule": rule.name, "operation": f"{case.method} {case.path}"}
            out.write(json.dumps(line) + "\n")
    return False
