"""The guarded call path every orchestrated call goes through."""

from orchcore.callpath.caller import Attempt, CallFailed, CallResult, ServiceCaller
from orchcore.callpath.refusals import CallDenied, InvalidCallError, UnknownCallerError

__all__ = [
    "Attempt",
    "CallDenied",
    "CallFailed",
    "CallResult",
    "InvalidCallError",
    "ServiceCaller",
    "UnknownCallerError",
]
