"""The guarded call path every orchestrated call goes through."""

from orchcore.callpath.caller import CallDenied, CallFailed, CallResult, ServiceCaller

__all__ = ["CallDenied", "CallFailed", "CallResult", "ServiceCaller"]
