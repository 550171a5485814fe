"""What the faces send to the bus and read from it: the seed's shapes, plus the pull,
dead-letter and depth shapes the seed leaves out. Every field from outside is validated
here; names follow PGMQ's rules (see ``QUEUE_NAME``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

#: PGMQ's queue names are table-name suffixes: at most 47 characters; orch also keeps
#: room for ``_dlq`` (so 43) and allows lower-case letters, digits and ``_`` only, as
#: PGMQ's own clients do (a name is folded into identifiers ``pgmq.q_<name>``).
QUEUE_NAME = r"^[a-z][a-z0-9_]{0,42}$"
DLQ_SUFFIX = "_dlq"
#: PGMQ's msg_id (a bigint) written in digits; one above 2**63 - 1 is refused as well.
MESSAGE_ID_PATTERN = r"^0*[0-9]{1,19}$"


class QueueType(StrEnum):
    QUEUE = "queue"
    TOPIC = "topic"
    DEAD_LETTER = "dead_letter"


class MessageEvent(StrEnum):
    """A message's lifecycle events as message_logs records them."""

    PRODUCED = "produced"
    DELIVERED = "delivered"
    ACKED = "acked"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    EXPIRED = "expired"
    REDRIVEN = "redriven"
    PURGED = "purged"


class MonitoringConfig(BaseModel):
    # Bounded as the database's integer is (the rules compare them in SQL).
    alert_on_backlog: int | None = Field(default=None, ge=0, le=2_147_483_647)
    alert_on_processing_time: int | None = Field(default=None, ge=0, le=2_147_483_647)  # ms


class CreateMessageQueueRequest(BaseModel):
    queue_name: str = Field(pattern=QUEUE_NAME)
    queue_type: QueueType = QueueType.QUEUE
    # topic: routing-key pattern of the bound queues
    message_pattern: str | None = Field(default=None, min_length=1)
    producer_services: list[str] = Field(default_factory=list)
    consumer_services: list[str] = Field(default_factory=list)
    retention_hours: int = Field(default=168, ge=1, le=24 * 365)
    max_message_size: int = Field(default=1_048_576, ge=1, le=16 * 1_048_576)
    dlq_enabled: bool = True
    dlq_max_retries: int = Field(default=3, ge=0, le=100)
    monitoring_config: MonitoringConfig = Field(default_factory=MonitoringConfig)
    # push delivery: the consumer service's endpoint orch delivers each message to
    push_endpoint: str | None = None
    visibility_timeout_seconds: int = Field(default=30, ge=1, le=12 * 3600)


class UpdateMessageQueueRequest(BaseModel):
    """Only the fields given change."""

    message_pattern: str | None = Field(default=None, min_length=1)
    producer_services: list[str] | None = None
    consumer_services: list[str] | None = None
    retention_hours: int | None = Field(default=None, ge=1, le=24 * 365)
    max_message_size: int | None = Field(default=None, ge=1, le=16 * 1_048_576)
    dlq_max_retries: int | None = Field(default=None, ge=0, le=100)
    monitoring_config: MonitoringConfig | None = None
    push_endpoint: str | None = None
    visibility_timeout_seconds: int | None = Field(default=None, ge=1, le=12 * 3600)


class MessageQueue(BaseModel):
    id: str
    queue_name: str
    queue_type: QueueType
    message_pattern: str | None
    producer_services: list[str]
    consumer_services: list[str]
    retention_hours: int
    max_message_size: int
    dlq_enabled: bool
    dlq_max_retries: int
    monitoring_config: dict[str, Any]
    push_endpoint: str | None
    visibility_timeout_seconds: int
    is_active: bool
    dead_letter_queue: str | None  # its <name>_dlq, when dlq_enabled
    created_at: datetime
    updated_at: datetime


class SendMessageRequest(BaseModel):
    queue_name: str
    message_type: str = Field(min_length=1, max_length=200)
    message_payload: dict[str, Any]
    correlation_id: str | None = Field(default=None, max_length=200)
    headers: dict[str, str] = Field(default_factory=dict)
    delay_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    ttl_seconds: int | None = Field(default=None, ge=1, le=365 * 24 * 3600)


class SendMessageResponse(BaseModel):
    message_id: str  # PGMQ's msg_id as a string
    queue_name: str
    status: str  # 'queued' | 'delayed' | 'failed'
    estimated_processing_time: str | None = None
    # a topic fans out: the bound queues that matched (message_id is the copy's id in the
    # first of them; status 'failed' when none matched and nothing was stored) ...
    fanned_out_to: list[str] = Field(default_factory=list)
    # ... and each copy's id: {queue_name: message_id}
    fanned_out_ids: dict[str, str] = Field(default_factory=dict)


class ReceiveRequest(BaseModel):
    max_messages: int = Field(default=1, ge=1, le=1000)
    visibility_timeout_seconds: int = Field(default=30, ge=1, le=12 * 3600)
    wait_seconds: float = Field(default=0, ge=0, le=60)


class ReceivedMessage(BaseModel):
    message_id: str
    message_type: str
    message_payload: dict[str, Any]
    correlation_id: str | None
    headers: dict[str, str]
    retry_count: int  # PGMQ read_ct - 1: deliveries before this one
    produced_at: datetime


class ReceiveResponse(BaseModel):
    messages: list[ReceivedMessage]


class NackRequest(BaseModel):
    delay_seconds: int = Field(default=0, ge=0, le=12 * 3600)
    error_message: str | None = Field(default=None, max_length=4000)


class ExtendRequest(BaseModel):
    visibility_timeout_seconds: int = Field(ge=1, le=12 * 3600)


class QueueMetrics(BaseModel):
    """The seed's queue_metrics, plus what an operator watches."""

    total_messages: int
    pending_messages: int  # ready now
    processing_messages: int  # in flight (read, visibility timeout not passed)
    delayed_messages: int = 0
    failed_messages: int  # in the dead-letter queue
    average_age_seconds: float
    oldest_age_seconds: float | None = None
    messages_in_per_minute: float = 0.0
    messages_out_per_minute: float = 0.0


class QueueMessage(BaseModel):
    """One entry of the seed's GetQueueMessagesResponse."""

    id: str
    message_id: str
    correlation_id: str | None
    producer_service: str
    consumer_service: str | None
    message_type: str
    message_size_bytes: int
    status: str
    retry_count: int
    processing_time_ms: int | None
    error_message: str | None
    produced_at: datetime
    consumed_at: datetime | None
    headers: dict[str, str]


class GetQueueMessagesResponse(BaseModel):
    messages: list[QueueMessage]
    queue_metrics: QueueMetrics


class DeadLetter(BaseModel):
    message_id: str  # its msg_id in the dead-letter queue
    original_queue: str
    original_message_id: str
    message_type: str
    message_payload: dict[str, Any]
    correlation_id: str | None
    attempts: int
    last_error: str | None
    dead_lettered_at: datetime
    produced_at: datetime


class RedriveRequest(BaseModel):
    # None: every dead letter of the queue
    message_ids: list[Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]] | None = None
    reason: str = Field(min_length=1, max_length=1000)


class PurgeRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class DeadLetterActionResponse(BaseModel):
    queue_name: str
    affected: int
    message_ids: list[str]
    # redrive: {dead-letter id: the new message's id in the queue}
    redriven_to: dict[str, str] = Field(default_factory=dict)


class DepthSample(BaseModel):
    """One sample of a queue's depth, taken by a daemon each few seconds."""

    queue_name: str
    sampled_at: datetime
    ready: int
    in_flight: int
    delayed: int
    dead_letters: int
    sent_total: int
    acked_total: int
