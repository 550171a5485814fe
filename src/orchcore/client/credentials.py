"""Where a face outside the daemon (the console over the API, `orch login`) finds the
daemon's URL and its token, and the file `orch login` keeps them in.

Each of the three is taken from the first place that has it:

- the URL: ``--api``, else ``ORCH_API_URL``, else the credentials file (the daemon of
  the last `orch login`, or the only one stored);
- the token: ``--token-file``, else ``ORCH_TOKEN``, else the credentials file's entry
  for that URL. Never a command-line argument: the process list would show it;
- the CA file: ``--ca-file``, else ``ORCH_CA_FILE``, else the one stored with the URL;
  none: the system's trusted CAs.

The credentials file is ``$XDG_CONFIG_HOME/orch/credentials.json`` (``~/.config/orch``),
or ``ORCH_CREDENTIALS_FILE``; it holds one entry per daemon URL. It is written whole and
atomically (a 0600 temporary file renamed over it), in a 0700 directory.

A token file or credentials file that another user may read or write (any group or
other bit in its mode) is refused, not warned about, as ssh refuses such a private key:
the console takes over the terminal, so a warning would scroll away unseen, and a token
left readable on a shared jump host is the very leak this guards against.

A token is never printed: :class:`ApiCredentials` leaves it out of its repr, and no
error here quotes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import ssl
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, ValidationError

from orchcore import __version__
from orchcore.errors import ValidationFailed

if TYPE_CHECKING:
    import httpx

URL_ENV = "ORCH_API_URL"
TOKEN_ENV = "ORCH_TOKEN"
CA_FILE_ENV = "ORCH_CA_FILE"
CREDENTIALS_FILE_ENV = "ORCH_CREDENTIALS_FILE"

USER_AGENT = f"orch/{__version__}"
#: Seconds a request may take to connect, send or wait for its answer.
DEFAULT_TIMEOUT_SECONDS = 10.0
#: RFC 6750's b64token: what an Authorization header can carry as it is.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: A token file is one token; more than this is not one.
_TOKEN_FILE_MAX_BYTES = 4096
_WHAT_TO_DO = "run `orch login URL`, or set ORCH_TOKEN, or pass --token-file FILE"


@dataclass(frozen=True)
class ApiCredentials:
    """A daemon's API and the token to call it with."""

    url: str
    token: str = field(repr=False)
    ca_file: str | None = None


# -- the URL ---------------------------------------------------------------------------


def api_url(text: str, *, source: str = "URL") -> str:
    """``text`` as the one spelling the credentials file keys by (lower-case scheme and
    host, no trailing slash), or :class:`ValidationFailed` naming ``source``: http or
    https only, a host, no user or password, query or fragment."""
    parts = urllib.parse.urlsplit(text.strip())
    shown = repr(text[:200])
    if parts.username is not None or parts.password is not None:
        # Not echoed: what precedes the @ may well be a password.
        raise ValidationFailed(
            source,
            "must not hold a user or password (the token goes in --token-file or ORCH_TOKEN)",
        )
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationFailed(source, f"expected an http:// or https:// URL, got {shown}")
    if not parts.hostname:
        raise ValidationFailed(source, f"names no host: {shown}")
    try:
        parts.port  # noqa: B018  (reading it checks it)
    except ValueError:
        raise ValidationFailed(source, f"has a port that is not one: {shown}") from None
    if parts.query or parts.fragment:
        raise ValidationFailed(source, f"must not have a query or fragment: {shown}")
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", "")
    )


# -- the token -------------------------------------------------------------------------


def checked_token(token: str, *, source: str) -> str:
    """``token`` without surrounding whitespace, if it can be a bearer token; the
    refusal says where it came from and never quotes it."""
    token = token.strip()
    if not token:
        raise ValidationFailed(source, "is empty; it should hold a token from `orch token create`")
    if not _TOKEN_SHAPE.fullmatch(token):
        raise ValidationFailed(
            source, "does not hold one token (a single word from `orch token create`)"
        )
    return token


def read_token_file(path: str) -> str:
    """The token in the file at ``path``: refused unless only its owner may read it."""
    try:
        with open(path, "rb") as file:
            _refuse_shared(path, os.fstat(file.fileno()).st_mode, source="--token-file")
            data = file.read(_TOKEN_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ValidationFailed("--token-file", f"cannot read {path}: {exc.strerror}") from None
    if len(data) > _TOKEN_FILE_MAX_BYTES:
        raise ValidationFailed("--token-file", f"{path} is too large to hold one token")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValidationFailed("--token-file", f"{path} does not hold one token") from None
    return checked_token(text, source=f"--token-file {path}")


def _refuse_shared(path: str | Path, mode: int, *, source: str) -> None:
    if mode & 0o077:
        raise ValidationFailed(
            source,
            f"{path} may be read or changed by other users (mode {stat.S_IMODE(mode):04o}); "
            f"`chmod 600 {path}` if the token is yours alone, else revoke it",
        )


# -- the credentials file --------------------------------------------------------------


class StoredLogin(BaseModel):
    """One daemon's entry: what `orch login` checked and kept."""

    token: str = Field(repr=False)
    ca_file: str | None = None
    name: str = Field(description="the token's name, as the daemon told it")
    role: str
    saved_at: datetime


class _Contents(BaseModel):
    version: Literal[1] = 1
    #: the daemon of the last `orch login`, used when no URL is given
    current: str | None = None
    daemons: dict[str, StoredLogin] = Field(default_factory=dict)


class CredentialsFile:
    """The file `orch login` writes and a face reads its credentials from."""

    def __init__(self, path: Path, *, own_directory: bool) -> None:
        self.path = path
        #: whether the directory is orch's own (the default's ``orch/``), which orch
        #: keeps 0700; a directory named by ORCH_CREDENTIALS_FILE is left as it is
        #: unless orch makes it (it may be one shared with other things)
        self._own_directory = own_directory

    @classmethod
    def located(cls, environ: Mapping[str, str] = os.environ) -> CredentialsFile:
        explicit = environ.get(CREDENTIALS_FILE_ENV)
        if explicit:
            return cls(Path(explicit).expanduser(), own_directory=False)
        config_home = environ.get("XDG_CONFIG_HOME", "")
        # The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored.
        base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
        return cls(base / "orch" / "credentials.json", own_directory=True)

    def get(self, url: str) -> StoredLogin | None:
        return self._read().daemons.get(url)

    def urls(self) -> list[str]:
        return sorted(self._read().daemons)

    def default_url(self) -> str | None:
        """The daemon of the last `orch login`, else the only one stored; None when
        nothing is stored; refused when several are and none was the last."""
        contents = self._read()
        if contents.current in contents.daemons:
            return contents.current
        if len(contents.daemons) <= 1:
            return next(iter(contents.daemons), None)
        raise ValidationFailed(
            "URL",
            f"{len(contents.daemons)} daemons are stored in {self.path} "
            f"({', '.join(sorted(contents.daemons))}): name one (--api URL or ORCH_API_URL)",
        )

    def save(self, url: str, login: StoredLogin) -> None:
        """Store ``login`` for ``url`` and make it the default daemon."""
        with self._locked():
            contents = self._read()
            contents.daemons[url] = login
            contents.current = url
            self._write(contents)

    def remove(self, url: str) -> bool:
        """Forget ``url``'s entry (the file goes with the last one); whether it had one."""
        if not self.path.exists():
            return False
        with self._locked():
            contents = self._read()
            if contents.daemons.pop(url, None) is None:
                return False
            if contents.current == url:
                contents.current = None
            if contents.daemons:
                self._write(contents)
            else:
                self.path.unlink()
            return True

    def _read(self) -> _Contents:
        try:
            with open(self.path, "rb") as file:
                _refuse_shared(self.path, os.fstat(file.fileno()).st_mode, source="credentials")
                raw = file.read()
        except FileNotFoundError:
            return _Contents()
        except OSError as exc:
            raise ValidationFailed(
                "credentials", f"cannot read {self.path}: {exc.strerror}"
            ) from None
        try:
            return _Contents.model_validate_json(raw)
        except ValidationError as exc:
            # Only where it is wrong: the values may include a token.
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "the file"
            raise ValidationFailed(
                "credentials",
                f"{self.path} is not orch's credentials file ({where}: {first['msg']}); "
                "remove it and run `orch login URL` again",
            ) from None

    def _write(self, contents: _Contents) -> None:
        # mkstemp makes the file 0600 whatever the umask: the token is never readable
        # by others, not even between the write and the rename.
        descriptor, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=".credentials-", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(contents.model_dump_json(indent=2) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(self.path.parent)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two logins at once would each drop the other's entry);
        readers need no lock, a rename is atomic."""
        directory = self._private_directory()
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _private_directory(self) -> Path:
        directory = self.path.parent
        missing = []
        for ancestor in (directory, *directory.parents):
            if ancestor.exists():
                break
            missing.append(ancestor)
        for made in reversed(missing):
            with contextlib.suppress(FileExistsError):
                made.mkdir(mode=0o700)
                os.chmod(made, 0o700)  # mkdir's mode is filtered by the umask
        if self._own_directory:
            os.chmod(directory, 0o700)
        return directory


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- resolution ------------------------------------------------------------------------


def resolve_credentials(
    *,
    api_url: str | None,
    token_file: str | None,
    ca_file: str | None,
    environ: Mapping[str, str] = os.environ,
) -> ApiCredentials:
    """The URL, token and CA file, each from the first place that has it (see the
    module); :class:`ValidationFailed` saying what to do when one is nowhere."""
    store = CredentialsFile.located(environ)
    url = _resolve_url(api_url, environ, store)
    token = _explicit_token(token_file, environ)
    ca = ca_file or environ.get(CA_FILE_ENV) or None
    if token is None or ca is None:
        stored = store.get(url)
        if token is None:
            if stored is None:
                raise ValidationFailed("token", f"no token for {url}: {_WHAT_TO_DO}")
            token = checked_token(stored.token, source=f"the token stored in {store.path}")
        if ca is None and stored is not None:
            ca = stored.ca_file
    return ApiCredentials(url=url, token=token, ca_file=ca)


def _resolve_url(explicit: str | None, environ: Mapping[str, str], store: CredentialsFile) -> str:
    if explicit:
        return api_url(explicit, source="--api")
    from_env = environ.get(URL_ENV)
    if from_env:
        return api_url(from_env, source=URL_ENV)
    stored = store.default_url()
    if stored is None:
        raise ValidationFailed(
            "URL", f"no daemon to talk to: pass --api URL or set {URL_ENV} ({_WHAT_TO_DO})"
        )
    return stored


def _explicit_token(token_file: str | None, environ: Mapping[str, str]) -> str | None:
    if token_file:
        return read_token_file(token_file)
    from_env = environ.get(TOKEN_ENV)
    if from_env:
        return checked_token(from_env, source=TOKEN_ENV)
    return None


# -- the HTTP client -------------------------------------------------------------------


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification of the daemon's certificate: against ``ca_file`` alone when given
    (a private CA), else the system's trusted CAs."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError:  # an OSError too: first
        raise ValidationFailed("--ca-file", f"{ca_file} holds no PEM certificate") from None
    except OSError as exc:
        raise ValidationFailed("--ca-file", f"cannot read {ca_file}: {exc.strerror}") from None


def http_client(
    creds: ApiCredentials, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_SECONDS
) -> httpx.AsyncClient:
    """A client of the daemon's API that sends the token on every request.

    ``trust_env=False``: no proxy from HTTP(S)_PROXY/ALL_PROXY, no ``.netrc``, no
    SSL_CERT_FILE. A proxy set for a jump host's way out to the internet would see a
    plain-http daemon's token and usually cannot reach an internal daemon anyway; and
    which CAs are trusted is said by --ca-file/ORCH_CA_FILE, not by an unrelated
    variable. httpx shows the Authorization header as ``[secure]`` in its reprs."""
    import httpx  # here: resolving credentials alone needs no HTTP library

    return httpx.AsyncClient(
        base_url=creds.url,
        headers={"Authorization": f"Bearer {creds.token}", "User-Agent": USER_AGENT},
        verify=ssl_context(creds.ca_file),
        timeout=timeout,
        trust_env=False,
    )
