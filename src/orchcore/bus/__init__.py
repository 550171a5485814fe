"""The message bus on PGMQ: queues and topics, at-least-once delivery, dead letters.

Faces hold ``orch.bus``, a :class:`MessageBus`; docs/BUS.md is the storage contract
that PGMQ clients in other languages keep.
"""

from orchcore.bus.bus import MessageBus, PreparedSend
from orchcore.bus.models import (
    CreateMessageQueueRequest,
    DeadLetter,
    DeadLetterActionResponse,
    DepthSample,
    ExtendRequest,
    GetQueueMessagesResponse,
    MessageEvent,
    MessageQueue,
    NackRequest,
    PurgeRequest,
    QueueMessage,
    QueueMetrics,
    QueueType,
    ReceivedMessage,
    ReceiveRequest,
    ReceiveResponse,
    RedriveRequest,
    SendMessageRequest,
    SendMessageResponse,
    UpdateMessageQueueRequest,
)

__all__ = [
    "CreateMessageQueueRequest",
    "DeadLetter",
    "DeadLetterActionResponse",
    "DepthSample",
    "ExtendRequest",
    "GetQueueMessagesResponse",
    "MessageBus",
    "MessageEvent",
    "MessageQueue",
    "NackRequest",
    "PreparedSend",
    "PurgeRequest",
    "QueueMessage",
    "QueueMetrics",
    "QueueType",
    "ReceiveRequest",
    "ReceiveResponse",
    "ReceivedMessage",
    "RedriveRequest",
    "SendMessageRequest",
    "SendMessageResponse",
    "UpdateMessageQueueRequest",
]
