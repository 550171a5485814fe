"""TLS for calls: the CA orch trusts to sign services' certificates, and the client
certificate it presents (mTLS)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def client_context(tls: TlsSettings | None) -> ssl.SSLContext:
    """The context https calls are made with: the settings' own (their CA, else the
    system's, and their client certificate), or without settings httpx's default
    (certifi's CAs, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set), as when the call
    path's https went through httpx's transport. Either verifies the service's
    certificate and that it names the host called. ALPN offers HTTP/1.1 only, as
    httpx did without HTTP/2: the transport speaks nothing else."""
    import httpx  # here: settings import this module, and a CLI verb may never call out

    context = tls.ssl_context() if tls else httpx.create_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
