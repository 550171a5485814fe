"""`orch queue`, `orch message` and `orch dlq` as a user runs them: real subprocesses,
--json that parses, confirmations, exit codes (2 for bad input, 1 for a missing target)."""

from __future__ import annotations

from pathlib import Path

from orchcore import Orch
from orchcore.audit import recent_actions
from tests.support.cli import run_orch
from tests.support.polling import eventually


async def dead_letter(orch: Orch, queue: str, message_type: str) -> None:
    """One message of ``message_type`` pushed into ``queue``'s dead-letter queue."""
    await orch.bus.send(
        {"queue_name": queue, "message_type": message_type, "message_payload": {"n": 1}},
        producer=None,
        actor="test",
    )

    async def dead() -> bool:
        got = await orch.bus.receive(queue, {"max_messages": 10}, consumer=None)
        for m in got.messages:
            await orch.bus.nack(queue, m.message_id, {"error_message": "boom"}, consumer=None)
        letters = await orch.bus.dead_letters(queue)
        return any(d.message_type == message_type for d in letters)

    await eventually(dead, message=f"{message_type} dead-lettered")


async def test_queue_verbs_with_json(dsn: str, orch: Orch, tmp_path: Path) -> None:
    created = await run_orch(
        dsn,
        "queue",
        "create",
        "guest_updates",
        "--producer",
        "booking",
        "--consumer",
        "notification",
        "--max-retries",
        "2",
        "--alert-on-backlog",
        "50",
        "--json",
    )
    assert created.code == 0, created.stderr
    queue = created.json()
    assert queue["queue_name"] == "guest_updates"
    assert queue["dead_letter_queue"] == "guest_updates_dlq"
    assert queue["dlq_max_retries"] == 2
    assert queue["monitoring_config"]["alert_on_backlog"] == 50

    spec = tmp_path / "topic.yaml"
    spec.write_text("queue_name: wedding_topic\nqueue_type: topic\ndlq_enabled: false\n")
    from_file = await run_orch(dsn, "queue", "create", "--file", str(spec), "--json")
    assert from_file.code == 0, from_file.stderr
    assert from_file.json()["queue_type"] == "topic"

    again = await run_orch(dsn, "queue", "create", "guest_updates")
    assert again.code == 1
    assert again.stderr.startswith("orch: error:")

    updated = await run_orch(
        dsn, "queue", "update", "guest_updates", "--max-retries", "5", "--json"
    )
    assert updated.code == 0, updated.stderr
    assert updated.json()["dlq_max_retries"] == 5
    assert updated.json()["monitoring_config"]["alert_on_backlog"] == 50

    sent = await run_orch(
        dsn,
        "message",
        "send",
        "guest_updates",
        "guest.added",
        "--payload",
        '{"guest": "Ada"}',
        "--header",
        "x-tenant=t1",
        "--correlation-id",
        "w-1",
        "--json",
    )
    assert sent.code == 0, sent.stderr
    message_id = sent.json()["message_id"]

    listed = await run_orch(dsn, "queue", "list", "--json")
    assert listed.code == 0, listed.stderr
    by_name = {q["queue_name"]: q for q in listed.json()}
    assert set(by_name) == {"guest_updates", "wedding_topic"}
    assert by_name["guest_updates"]["queue_metrics"]["pending_messages"] == 1
    human_list = await run_orch(dsn, "queue", "list")
    assert "guest_updates" in human_list.stdout
    assert "● active" in human_list.stdout

    shown = await run_orch(dsn, "queue", "show", "guest_updates", "--json")
    assert shown.code == 0, shown.stderr
    assert shown.json()["queue_metrics"]["pending_messages"] == 1
    assert [m["message_id"] for m in shown.json()["messages"]] == [message_id]
    human = await run_orch(dsn, "queue", "show", "guest_updates")
    assert "ready 1" in human.stdout
    assert "in flight 0" in human.stdout
    assert "dead letters 0" in human.stdout
    assert "guest.added" in human.stdout

    unconfirmed = await run_orch(dsn, "queue", "purge", "guest_updates", "--reason", "reset")
    assert unconfirmed.code == 2  # stdin is not a terminal: --yes is needed
    assert "--yes" in unconfirmed.stderr
    purged = await run_orch(
        dsn, "queue", "purge", "guest_updates", "--reason", "reset", "--yes", "--json"
    )
    assert purged.code == 0, purged.stderr
    assert purged.json()["affected"] == 1
    assert (await orch.bus.metrics("guest_updates")).pending_messages == 0

    deactivated = await run_orch(
        dsn, "queue", "deactivate", "wedding_topic", "--reason", "unused", "--yes", "--json"
    )
    assert deactivated.code == 0, deactivated.stderr
    assert deactivated.json()["is_active"] is False
    inactive = await run_orch(dsn, "message", "send", "wedding_topic", "t")
    assert inactive.code == 1
    reactivated = await run_orch(
        dsn, "queue", "reactivate", "wedding_topic", "--reason", "back", "--json"
    )
    assert reactivated.json()["is_active"] is True
    entries = await recent_actions(orch.db.pool, limit=50)
    assert {e.reason for e in entries} >= {"reset", "unused", "back"}
    assert all(e.actor == "tester" for e in entries if e.reason in ("reset", "unused", "back"))


async def test_message_send_receive_ack(dsn: str, orch: Orch) -> None:
    await orch.bus.create_queue({"queue_name": "payments"}, actor="test")
    sent = await run_orch(
        dsn, "message", "send", "payments", "payment.failed", "--payload", '{"id": 7}', "--json"
    )
    assert sent.code == 0, sent.stderr
    received = await run_orch(
        dsn, "message", "receive", "payments", "--max", "5", "--visibility-timeout", "60", "--json"
    )
    assert received.code == 0, received.stderr
    [got] = received.json()["messages"]
    assert got["message_id"] == sent.json()["message_id"]
    assert got["message_payload"] == {"id": 7}
    assert got["retry_count"] == 0

    acked = await run_orch(dsn, "message", "ack", "payments", got["message_id"], "--json")
    assert acked.code == 0, acked.stderr
    assert acked.json() == {"queue_name": "payments", "acked": [got["message_id"]], "missing": []}
    metrics = await orch.bus.metrics("payments")
    assert metrics.pending_messages == metrics.processing_messages == 0

    empty = await run_orch(dsn, "message", "receive", "payments", "--json")
    assert empty.json() == {"messages": []}

    for n in range(2):
        await orch.bus.send(
            {"queue_name": "payments", "message_type": "t", "message_payload": {"n": n}},
            producer=None,
            actor="test",
        )
    [first, second] = (
        await orch.bus.receive("payments", {"max_messages": 2}, consumer=None)
    ).messages
    nacked = await run_orch(
        dsn, "message", "nack", "payments", first.message_id, "--error", "later", "--json"
    )
    assert nacked.code == 0, nacked.stderr
    assert nacked.json()["outcome"] == "retry"
    several = await run_orch(
        dsn, "message", "ack", "payments", first.message_id, second.message_id, "999999", "--json"
    )
    assert several.code == 1  # one id unknown: said, not hidden
    assert sorted(several.json()["acked"]) == sorted([first.message_id, second.message_id])
    assert several.json()["missing"] == ["999999"]


async def test_bad_input_exits_2_and_a_missing_queue_1(dsn: str, orch: Orch) -> None:
    await orch.bus.create_queue({"queue_name": "payments"}, actor="test")
    bad_name = await run_orch(dsn, "queue", "create", "Bad-Name")
    assert bad_name.code == 2, bad_name.stderr
    assert "queue_name" in bad_name.stderr
    assert len(bad_name.stderr.strip().splitlines()) == 1
    not_object = await run_orch(dsn, "message", "send", "payments", "t", "--payload", "[1]")
    assert not_object.code == 2
    assert "--payload" in not_object.stderr
    not_json = await run_orch(dsn, "message", "send", "payments", "t", "--payload", "{oops")
    assert not_json.code == 2
    bad_header = await run_orch(dsn, "message", "send", "payments", "t", "-H", "novalue")
    assert bad_header.code == 2
    bad_max = await run_orch(dsn, "message", "receive", "payments", "--max", "0")
    assert bad_max.code == 2
    assert "max_messages" in bad_max.stderr
    not_a_number = await run_orch(dsn, "message", "receive", "payments", "--max", "many")
    assert not_a_number.code == 2
    no_reason = await run_orch(dsn, "dlq", "purge", "payments", "--yes")
    assert no_reason.code == 2
    assert "--reason" in no_reason.stderr
    nothing = await run_orch(dsn, "queue", "update", "payments")
    assert nothing.code == 2

    missing = await run_orch(dsn, "queue", "show", "nope")
    assert missing.code == 1
    assert "nope" in missing.stderr
    missing_send = await run_orch(dsn, "message", "send", "nope", "t")
    assert missing_send.code == 1


async def test_dlq_list_show_redrive_purge(dsn: str, orch: Orch) -> None:
    await orch.bus.create_queue({"queue_name": "notices", "dlq_max_retries": 1}, actor="test")
    await dead_letter(orch, "notices", "notice.sent")

    listed = await run_orch(dsn, "dlq", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.json() == [
        {
            "queue_name": "notices",
            "dead_letter_queue": "notices_dlq",
            "dead_letters": 1,
            "dlq_max_retries": 1,
            "is_active": True,
        }
    ]
    shown = await run_orch(dsn, "dlq", "show", "notices", "--json")
    assert shown.code == 0, shown.stderr
    [letter] = shown.json()
    assert letter["last_error"] == "boom"
    assert letter["original_queue"] == "notices"
    with_payload = await run_orch(dsn, "dlq", "show", "notices", "--payload")
    assert '"n": 1' in with_payload.stdout
    assert "boom" in with_payload.stdout

    unconfirmed = await run_orch(dsn, "dlq", "redrive", "notices", "--reason", "fixed")
    assert unconfirmed.code == 2
    assert "Redrive 1 dead letter(s)" in unconfirmed.stderr
    redriven = await run_orch(
        dsn, "dlq", "redrive", "notices", "--reason", "fixed", "--yes", "--json"
    )
    assert redriven.code == 0, redriven.stderr
    assert redriven.json()["affected"] == 1
    assert (await orch.bus.metrics("notices")).pending_messages == 1
    [back] = (await orch.bus.receive("notices", {}, consumer=None)).messages
    await orch.bus.ack("notices", back.message_id, consumer=None)
    nothing_left = await run_orch(
        dsn, "dlq", "redrive", "notices", "--reason", "again", "--yes", "--json"
    )
    assert nothing_left.json()["affected"] == 0

    await dead_letter(orch, "notices", "notice.late")
    purged = await run_orch(dsn, "dlq", "purge", "notices", "--reason", "junk", "--yes", "--json")
    assert purged.code == 0, purged.stderr
    assert purged.json()["affected"] == 1
    assert await orch.bus.dead_letters("notices") == []
    entries = await recent_actions(orch.db.pool, limit=50)
    assert {(e.reason, e.actor) for e in entries} >= {("fixed", "tester"), ("junk", "tester")}
