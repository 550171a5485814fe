"""TLS on the daemon's listeners (``--tls-cert``, ``--tls-key``): the API's and, when it
has one, the OTLP listener's, both with the same certificate.

The pair is loaded once before anything listens, so a file that is missing or
unreadable, a certificate that is not one, or a key that does not match it fails with
one line naming the option instead of a traceback from inside the server's start.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from orchcore.errors import ValidationFailed


@dataclass(frozen=True)
class ListenerTls:
    cert_file: str
    key_file: str

    def check(self) -> None:
        """Raise :class:`ValidationFailed` (one line) unless the server can use the pair."""
        for option, path in (("--tls-cert", self.cert_file), ("--tls-key", self.key_file)):
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ValidationFailed(option, f"cannot read {path}: {exc.strerror}") from None
        try:  # certificates alone first, so a bad certificate is not blamed on the key
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=self.cert_file)
        except ssl.SSLError:
            raise ValidationFailed(
                "--tls-cert", f"{self.cert_file} holds no PEM certificate"
            ) from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert_file, self.key_file, password=self._no_password)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                reason = f"{self.key_file} does not match the certificate in {self.cert_file}"
            else:
                reason = f"{self.key_file} holds no PEM private key"
            raise ValidationFailed("--tls-key", reason) from None

    def _no_password(self) -> bytes:
        # Without a callable OpenSSL would ask on the terminal, and a daemon has none.
        raise ValidationFailed(
            "--tls-key", f"{self.key_file} is encrypted; give the daemon an unencrypted key"
        )

    def uvicorn_options(self) -> dict[str, Any]:
        return {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}


def listener_tls(cert_file: str | None, key_file: str | None) -> ListenerTls | None:
    """The checked pair the options name, or None for plain HTTP."""
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        missing = "--tls-cert" if cert_file is None else "--tls-key"
        raise ValidationFailed(missing, "--tls-cert and --tls-key go together")
    tls = ListenerTls(cert_file, key_file)
    tls.check()
    return tls
