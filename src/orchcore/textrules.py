"""Text rules the validators check, written as JSON Schema patterns so the OpenAPI
document says them too (clients generated from it refuse what orch would)."""

from __future__ import annotations

#: Text that is not blank: at least one character ``str.strip()`` keeps. Python's
#: whitespace, spelled out: ECMA's ``\S`` differs (it keeps U+001C-U+001F and U+0085,
#: which ``strip()`` removes, and drops U+FEFF, which it keeps).
NOT_BLANK_PATTERN = (
    "[^\\t-\\r\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000]"
)

#: What one HTTP header value may hold (callpath/headers.py): visible latin-1, spaces
#: and tabs; no CR, LF, NUL or other control characters.
HEADER_VALUE_PATTERN = "^[\\t\\u0020-\\u007e\\u0080-\\u00ff]*$"

#: A Kubernetes namespace (a DNS-1123 label), as the Istio export checks it.
DNS_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
