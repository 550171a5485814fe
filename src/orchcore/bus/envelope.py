"""The shape of an orch message inside PGMQ, which every PGMQ client sees (docs/BUS.md).

PGMQ stores a JSON ``message`` and JSON ``headers`` per message. orch's message is the
envelope ``{"type", "payload", "correlation_id", "producer"}``; its headers are the
sender's, plus ``x-orch-*`` ones orch adds (TTL, last error, dead-letter facts). Pure
functions: encoding checks size and storability once, so the send path serialises the
payload exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchcore.bus.models import DeadLetter, ReceivedMessage, SendMessageRequest
from orchcore.errors import PayloadTooLarge, ValidationFailed
from orchcore.storable import Unstorable, check_storable

#: Headers orch writes; a sender may not set them (they would lie about TTL or origin).
ORCH_HEADER_PREFIX = "x-orch-"
EXPIRES_AT = "x-orch-expires-at"
LAST_ERROR = "x-orch-last-error"
#: The delivery (read count) whose nack left LAST_ERROR.
LAST_ERROR_DELIVERY = "x-orch-last-error-delivery"
ORIGINAL_QUEUE = "x-orch-original-queue"
ORIGINAL_MESSAGE_ID = "x-orch-original-message-id"
ATTEMPTS = "x-orch-attempts"
PRODUCED_AT = "x-orch-produced-at"

#: The message_type of a PGMQ message that is not in orch's envelope (a foreign client's).
FOREIGN_TYPE = "pgmq.message"


@dataclass(slots=True)
class EncodedMessage:
    """A message ready for pgmq.send: JSON texts, its payload size, delay and TTL."""

    message_type: str
    correlation_id: str | None
    producer: str | None
    message: str
    headers: str | None
    header_values: dict[str, str]
    size: int
    delay_seconds: int
    ttl_seconds: int | None


#: One encoder for every send (json.dumps with options builds a new one each call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_quote: Any = getattr(json.encoder, "encode_basestring", json.dumps)  # C, as json uses


def _string(value: str | None, field: str) -> str:
    if value is None:
        return "null"
    if "\x00" in value:
        raise ValidationFailed(field, "contains a NUL character, which PostgreSQL cannot store")
    return str(_quote(value))


def _dumps(value: Any, field: str) -> str:
    try:
        text: str = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(field, f"not storable as JSON ({exc})") from None
    if "\\u0000" in text:  # jsonb cannot hold NUL; confirm (a literal backslash-u0000 is fine)
        try:
            check_storable(value, field)
        except Unstorable as exc:
            raise ValidationFailed(exc.where or field, exc.why) from None
    return text


def encode(
    request: SendMessageRequest, *, queue_name: str, producer: str | None, max_size: int
) -> EncodedMessage:
    """The PGMQ message and headers of a send, or the reason it is refused."""
    for key in request.headers:
        if key.lower().startswith(ORCH_HEADER_PREFIX):
            raise ValidationFailed(f"headers.{key}", "x-orch-* headers are set by orch only")
    if request.ttl_seconds is not None and request.ttl_seconds <= request.delay_seconds:
        raise ValidationFailed(
            "ttl_seconds", "must exceed delay_seconds: the message would expire before delivery"
        )
    payload = _dumps(request.message_payload, "message_payload")
    size = len(payload) if payload.isascii() else len(payload.encode("utf-8"))
    if size > max_size:
        raise PayloadTooLarge(
            f"message_payload: {size} bytes is over the limit of queue {queue_name!r} "
            f"({max_size} bytes)"
        )
    message = (
        f'{{"type":{_string(request.message_type, "message_type")},"payload":{payload},'
        f'"correlation_id":{_string(request.correlation_id, "correlation_id")},'
        f'"producer":{_string(producer, "producer")}}}'
    )
    headers = _dumps(request.headers, "headers") if request.headers else None
    return EncodedMessage(
        message_type=request.message_type,
        correlation_id=request.correlation_id,
        producer=producer,
        message=message,
        headers=headers,
        header_values=request.headers,
        size=size,
        delay_seconds=request.delay_seconds,
        ttl_seconds=request.ttl_seconds,
    )


@dataclass(frozen=True)
class Envelope:
    message_type: str
    payload: dict[str, Any]
    correlation_id: str | None
    producer: str | None


def open_envelope(message: Any) -> Envelope:
    """Read a PGMQ message; one not in orch's shape is carried whole as the payload."""
    if (
        isinstance(message, dict)
        and isinstance(message.get("type"), str)
        and isinstance(message.get("payload"), dict)
    ):
        correlation = message.get("correlation_id")
        producer = message.get("producer")
        return Envelope(
            message["type"],
            message["payload"],
            correlation if isinstance(correlation, str) else None,
            producer if isinstance(producer, str) else None,
        )
    payload = message if isinstance(message, dict) else {"value": message}
    return Envelope(FOREIGN_TYPE, payload, None, None)


def string_headers(headers: Any) -> dict[str, str]:
    """Headers as strings (a foreign client may have stored numbers or objects)."""
    if not isinstance(headers, dict):
        return {}
    return {
        str(key): value if isinstance(value, str) else json.dumps(value)
        for key, value in headers.items()
    }


def received(row: Any, envelope: Envelope, headers: dict[str, str]) -> ReceivedMessage:
    """A pgmq.message_record row as the consumer gets it (its message opened, its
    headers read: the receive keeps both for the ack, see orchcore.bus.deliveries)."""
    return ReceivedMessage(
        message_id=str(row["msg_id"]),
        message_type=envelope.message_type,
        message_payload=envelope.payload,
        correlation_id=envelope.correlation_id,
        headers=headers,
        retry_count=max(int(row["read_ct"]) - 1, 0),
        produced_at=row["enqueued_at"],
    )


def _parse_time(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return default


def dead_letter(row: Any, *, queue_name: str) -> DeadLetter:
    """A row of ``<queue>_dlq`` as an operator inspects it."""
    envelope = open_envelope(row["message"])
    headers = string_headers(row["headers"])
    attempts = headers.get(ATTEMPTS, "")
    return DeadLetter(
        message_id=str(row["msg_id"]),
        original_queue=headers.get(ORIGINAL_QUEUE, queue_name),
        original_message_id=headers.get(ORIGINAL_MESSAGE_ID, ""),
        message_type=envelope.message_type,
        message_payload=envelope.payload,
        correlation_id=envelope.correlation_id,
        attempts=int(attempts) if attempts.isdigit() else 0,
        last_error=headers.get(LAST_ERROR),
        dead_lettered_at=row["enqueued_at"],
        produced_at=_parse_time(headers.get(PRODUCED_AT), row["enqueued_at"]),
    )
