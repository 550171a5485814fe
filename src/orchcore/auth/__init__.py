"""API tokens and the role rules every face enforces the same way."""

from orchcore.auth.roles import Action, Principal, Role
from orchcore.auth.tokens import ApiToken, TokenStore, Unauthenticated, parse_lifetime

__all__ = [
    "Action",
    "ApiToken",
    "Principal",
    "Role",
    "TokenStore",
    "Unauthenticated",
    "parse_lifetime",
]
