"""Message bus routes (the seed's shapes, plus pull delivery and dead letters).

Who may do what: operators (``platform_engineer``, ``system_admin``) manage queues,
send, consume and handle dead letters; ``monitoring_system`` reads; a ``service``
token sends to the queues its service is listed on as producer and consumes those it
is listed on as consumer. The service comes from the token (never from the body); the
bus checks the listing and answers 403 for a service not listed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute, Timestamp
from orchcore.auth import Action
from orchcore.bus.models import (
    MESSAGE_ID_PATTERN,
    CreateMessageQueueRequest,
    DeadLetter,
    DeadLetterActionResponse,
    DepthSample,
    ExtendRequest,
    GetQueueMessagesResponse,
    MessageQueue,
    NackRequest,
    PurgeRequest,
    QueueMetrics,
    ReceiveRequest,
    ReceiveResponse,
    RedriveRequest,
    SendMessageRequest,
    SendMessageResponse,
    UpdateMessageQueueRequest,
)
from orchcore.errors import ValidationFailed
from orchcore.textrules import NOT_BLANK_PATTERN

#: A message id in a path: PGMQ's msg_id in digits. The pattern documents what the bus
#: checks (and names in its refusal).
MessageId = Annotated[str, Path(json_schema_extra={"pattern": MESSAGE_ID_PATTERN})]

router = APIRouter(
    prefix="/api/orchestration/messages", tags=["messages"], route_class=ContractRoute
)

READ = [allowed(Action.READ)]
WRITE = [allowed(Action.WRITE)]
SEND = [allowed(Action.SEND)]
CONSUME = [allowed(Action.CONSUME)]

#: The bus's answers that are not the body's validation, for the OpenAPI document.
REFUSALS: dict[int | str, dict[str, Any]] = {
    status.HTTP_403_FORBIDDEN: {"description": "the token's service is not listed on the queue"},
    status.HTTP_404_NOT_FOUND: {"description": "unknown queue or message"},
    status.HTTP_409_CONFLICT: {"description": "the queue is inactive"},
}


class QueueSummary(MessageQueue):
    queue_metrics: QueueMetrics | None = Field(description="depths now; none for an inactive queue")


class GetMessageQueuesResponse(BaseModel):
    queues: list[QueueSummary]
    total_queues: int


class QueueDetail(BaseModel):
    queue: MessageQueue
    queue_metrics: QueueMetrics


class OperatorReason(BaseModel):
    reason: str = Field(
        min_length=1, max_length=1000, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )


class BatchedMessage(SendMessageRequest):
    """One message of a batch: its queue is the batch's (naming another is refused)."""

    queue_name: str | None = None  # type: ignore[assignment]


class SendBatchRequest(BaseModel):
    queue_name: str
    messages: list[BatchedMessage] = Field(min_length=1, max_length=1000)


class SendBatchResponse(BaseModel):
    queue_name: str
    messages: list[SendMessageResponse]


class DeadLettersResponse(BaseModel):
    queue_name: str
    dead_letters: list[DeadLetter]


class MessageActionResponse(BaseModel):
    queue_name: str
    message_id: str
    status: str  # acked | nacked | extended
    outcome: str | None = Field(
        default=None,
        description="of a nack: retry (it comes back), dead_lettered, or failed (its queue "
        "has no dead-letter queue)",
    )


@router.get("/queues", response_model=GetMessageQueuesResponse, dependencies=READ)
async def list_queues(orch: Engine, include_inactive: bool = False) -> GetMessageQueuesResponse:
    queues = await orch.bus.list_queues(include_inactive=include_inactive)
    metrics = await orch.bus.all_metrics()
    summaries = [
        QueueSummary(**q.model_dump(), queue_metrics=metrics.get(q.queue_name)) for q in queues
    ]
    return GetMessageQueuesResponse(queues=summaries, total_queues=len(summaries))


@router.post(
    "/queues",
    response_model=MessageQueue,
    status_code=status.HTTP_201_CREATED,
    responses={status.HTTP_409_CONFLICT: {"description": "a queue of that name exists"}},
    dependencies=WRITE,
)
async def create_queue(
    request: CreateMessageQueueRequest, orch: Engine, caller: Caller
) -> MessageQueue:
    return await orch.bus.create_queue(request, actor=caller.actor)


@router.get("/queues/{queue_name}", response_model=QueueDetail, dependencies=READ)
async def get_queue(queue_name: str, orch: Engine) -> QueueDetail:
    queue = await orch.bus.get_queue(queue_name)
    return QueueDetail(queue=queue, queue_metrics=await orch.bus.metrics(queue_name))


@router.patch(
    "/queues/{queue_name}", response_model=MessageQueue, responses=REFUSALS, dependencies=WRITE
)
async def update_queue(
    queue_name: str, request: UpdateMessageQueueRequest, orch: Engine, caller: Caller
) -> MessageQueue:
    return await orch.bus.update_queue(queue_name, request, actor=caller.actor)


@router.post(
    "/queues/{queue_name}/deactivate",
    response_model=MessageQueue,
    responses=REFUSALS,
    dependencies=WRITE,
)
async def deactivate_queue(
    queue_name: str, request: OperatorReason, orch: Engine, caller: Caller
) -> MessageQueue:
    return await orch.bus.deactivate_queue(queue_name, actor=caller.actor, reason=request.reason)


@router.post(
    "/queues/{queue_name}/reactivate",
    response_model=MessageQueue,
    responses=REFUSALS,
    dependencies=WRITE,
)
async def reactivate_queue(
    queue_name: str, request: OperatorReason, orch: Engine, caller: Caller
) -> MessageQueue:
    return await orch.bus.reactivate_queue(queue_name, actor=caller.actor, reason=request.reason)


@router.post(
    "/queues/{queue_name}/purge",
    response_model=DeadLetterActionResponse,
    responses=REFUSALS,
    dependencies=WRITE,
)
async def purge_queue(
    queue_name: str, request: OperatorReason, orch: Engine, caller: Caller
) -> DeadLetterActionResponse:
    """Delete every message waiting in the queue (not its dead letters); audited."""
    return await orch.bus.purge_queue(queue_name, actor=caller.actor, reason=request.reason)


@router.get(
    "/queues/{queue_name}/messages",
    response_model=GetQueueMessagesResponse,
    responses=REFUSALS,
    dependencies=READ,
)
async def queue_messages(
    queue_name: str, orch: Engine, limit: int = Query(default=100, ge=1, le=1000)
) -> GetQueueMessagesResponse:
    return await orch.bus.queue_messages(queue_name, limit=limit)


@router.post(
    "/send",
    response_model=SendMessageResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **REFUSALS,
        413: {"description": "payload over the queue's max_message_size; nothing stored"},
    },
    dependencies=SEND,
)
async def send(request: SendMessageRequest, orch: Engine, caller: Caller) -> SendMessageResponse:
    return await orch.bus.send(request, producer=caller.bus_identity(), actor=caller.actor)


@router.post(
    "/send-batch",
    response_model=SendBatchResponse,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
    dependencies=SEND,
)
async def send_batch(request: SendBatchRequest, orch: Engine, caller: Caller) -> SendBatchResponse:
    """Every message to one queue, all stored or none."""
    messages: list[SendMessageRequest | dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        if message.queue_name not in (None, request.queue_name):
            raise ValidationFailed(
                f"messages.{index}.queue_name",
                f"a batch goes to one queue ({request.queue_name!r})",
            )
        fields = message.model_dump()
        fields["queue_name"] = request.queue_name
        messages.append(SendMessageRequest.model_validate(fields))
    sent = await orch.bus.send_batch(
        request.queue_name, messages, producer=caller.bus_identity(), actor=caller.actor
    )
    return SendBatchResponse(queue_name=request.queue_name, messages=sent)


@router.post(
    "/queues/{queue_name}/receive",
    response_model=ReceiveResponse,
    responses=REFUSALS,
    dependencies=CONSUME,
)
async def receive(
    queue_name: str, orch: Engine, caller: Caller, request: ReceiveRequest | None = None
) -> ReceiveResponse:
    """Up to ``max_messages``, hidden from other consumers for the visibility timeout;
    with ``wait_seconds``, waits that long for the first one."""
    return await orch.bus.receive(
        queue_name, request or ReceiveRequest(), consumer=caller.bus_identity()
    )


@router.post(
    "/queues/{queue_name}/messages/{message_id}/ack",
    response_model=MessageActionResponse,
    responses=REFUSALS,
    dependencies=CONSUME,
)
async def ack(
    queue_name: str, message_id: MessageId, orch: Engine, caller: Caller
) -> MessageActionResponse:
    await orch.bus.ack(queue_name, message_id, consumer=caller.bus_identity())
    return MessageActionResponse(queue_name=queue_name, message_id=message_id, status="acked")


@router.post(
    "/queues/{queue_name}/messages/{message_id}/nack",
    response_model=MessageActionResponse,
    responses=REFUSALS,
    dependencies=CONSUME,
)
async def nack(
    queue_name: str,
    message_id: MessageId,
    orch: Engine,
    caller: Caller,
    request: NackRequest | None = None,
) -> MessageActionResponse:
    """Give the message back (after ``delay_seconds``); past the queue's retry limit it
    goes to the dead-letter queue with ``error_message``."""
    outcome = await orch.bus.nack(
        queue_name, message_id, request or NackRequest(), consumer=caller.bus_identity()
    )
    return MessageActionResponse(
        queue_name=queue_name, message_id=message_id, status="nacked", outcome=outcome
    )


@router.post(
    "/queues/{queue_name}/messages/{message_id}/extend",
    response_model=MessageActionResponse,
    responses=REFUSALS,
    dependencies=CONSUME,
)
async def extend(
    queue_name: str, message_id: MessageId, request: ExtendRequest, orch: Engine, caller: Caller
) -> MessageActionResponse:
    await orch.bus.extend(queue_name, message_id, request, consumer=caller.bus_identity())
    return MessageActionResponse(queue_name=queue_name, message_id=message_id, status="extended")


@router.get(
    "/queues/{queue_name}/dead-letters",
    response_model=DeadLettersResponse,
    responses=REFUSALS,
    dependencies=READ,
)
async def dead_letters(
    queue_name: str, orch: Engine, limit: int = Query(default=100, ge=1, le=1000)
) -> DeadLettersResponse:
    found = await orch.bus.dead_letters(queue_name, limit=limit)
    return DeadLettersResponse(queue_name=queue_name, dead_letters=found)


@router.post(
    "/queues/{queue_name}/dead-letters/redrive",
    response_model=DeadLetterActionResponse,
    responses=REFUSALS,
    dependencies=WRITE,
)
async def redrive(
    queue_name: str, request: RedriveRequest, orch: Engine, caller: Caller
) -> DeadLetterActionResponse:
    """Back to the original queue with the retry count reset (all, or ``message_ids``)."""
    return await orch.bus.redrive(queue_name, request, actor=caller.actor)


@router.post(
    "/queues/{queue_name}/dead-letters/purge",
    response_model=DeadLetterActionResponse,
    responses=REFUSALS,
    dependencies=WRITE,
)
async def purge_dead_letters(
    queue_name: str, request: PurgeRequest, orch: Engine, caller: Caller
) -> DeadLetterActionResponse:
    return await orch.bus.purge_dead_letters(queue_name, request, actor=caller.actor)


@router.get(
    "/queues/{queue_name}/depth",
    response_model=list[DepthSample],
    responses=REFUSALS,
    dependencies=READ,
)
async def depth_history(
    queue_name: str,
    orch: Engine,
    since: Annotated[Timestamp, Query(description="samples taken at or after this time")],
) -> list[DepthSample]:
    """The queue's depth as the daemons sampled it (every few seconds), oldest first."""
    return await orch.bus.depth_history(queue_name, since=since)
