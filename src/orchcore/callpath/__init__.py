"""The guarded call path every orchestrated call goes through."""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
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

# Imported when first read (see orchcore.lazy): importing one module of the package
# must not import all of them.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.callpath.caller": ("Attempt", "CallFailed", "CallResult", "ServiceCaller"),
        "orchcore.callpath.refusals": ("CallDenied", "InvalidCallError", "UnknownCallerError"),
    },
)
