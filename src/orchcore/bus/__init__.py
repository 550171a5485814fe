"""The message bus on PGMQ: queues and topics, at-least-once delivery, dead letters.

Faces hold ``orch.bus``, a :class:`MessageBus`; docs/BUS.md is the storage contract
that PGMQ clients in other languages keep.
"""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
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

# Imported when first read (see orchcore.lazy): importing one module of the package
# must not import all of them.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.bus.bus": ("MessageBus", "PreparedSend"),
        "orchcore.bus.models": (
            "CreateMessageQueueRequest",
            "DeadLetter",
            "DeadLetterActionResponse",
            "DepthSample",
            "ExtendRequest",
            "GetQueueMessagesResponse",
            "MessageEvent",
            "MessageQueue",
            "NackRequest",
            "PurgeRequest",
            "QueueMessage",
            "QueueMetrics",
            "QueueType",
            "ReceivedMessage",
            "ReceiveRequest",
            "ReceiveResponse",
            "RedriveRequest",
            "SendMessageRequest",
            "SendMessageResponse",
            "UpdateMessageQueueRequest",
        ),
    },
)
