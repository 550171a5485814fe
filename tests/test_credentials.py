"""Where the console over the API finds its daemon, token and CA (orchcore.client.credentials):
the order of the places, the credentials file's permissions and writes, and a token
that shows nowhere."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchcore.client.credentials import (
    USER_AGENT,
    ApiCredentials,
    CredentialsFile,
    StoredLogin,
    api_url,
    http_client,
    resolve_credentials,
)
from orchcore.errors import ValidationFailed
from tests.support.http import SwitchableServer

SECRET = "orch_" + "s3cret" * 7
OTHER = "orch_" + "other0" * 7


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def token_file(path: Path, token: str, mode: int = 0o600) -> str:
    path.write_text(token + "\n")
    path.chmod(mode)
    return str(path)


def login(token: str, ca_file: str | None = None) -> StoredLogin:
    return StoredLogin(
        token=token,
        ca_file=ca_file,
        name="oncall",
        role="monitoring_system",
        saved_at=datetime.now(UTC),
    )


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """An environment of nothing but the credentials file's place."""
    return {"ORCH_CREDENTIALS_FILE": str(tmp_path / "made" / "here" / "credentials.json")}


def store_of(environ: dict[str, str]) -> CredentialsFile:
    return CredentialsFile.located(environ)


def resolve(environ: dict[str, str], **given: str | None) -> ApiCredentials:
    options: dict[str, str | None] = {"api_url": None, "token_file": None, "ca_file": None}
    return resolve_credentials(**{**options, **given}, environ=environ)


# -- resolution order ------------------------------------------------------------------


def test_each_part_comes_from_the_first_place_that_has_it(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    store_of(environ).save("https://stored.example", login(SECRET, "/stored/ca.pem"))
    # Only the file: its daemon, token and CA.
    assert resolve(environ) == ApiCredentials("https://stored.example", SECRET, "/stored/ca.pem")
    # The environment before the file; the file's token and CA only for its own URL.
    environ |= {"ORCH_API_URL": "https://env.example", "ORCH_TOKEN": OTHER}
    assert resolve(environ) == ApiCredentials("https://env.example", OTHER, None)
    environ |= {"ORCH_API_URL": "https://stored.example/", "ORCH_CA_FILE": "/env/ca.pem"}
    assert resolve(environ) == ApiCredentials("https://stored.example", OTHER, "/env/ca.pem")
    # The arguments before the environment.
    third = "orch_" + "third0" * 7
    creds = resolve(
        environ,
        api_url="https://ARG.example:7400/",
        token_file=token_file(tmp_path / "t", third),
        ca_file="/arg/ca.pem",
    )
    assert creds == ApiCredentials("https://arg.example:7400", third, "/arg/ca.pem")


def test_the_stored_token_serves_its_url_whatever_the_default(environ: dict[str, str]) -> None:
    store = store_of(environ)
    store.save("https://a.example", login(SECRET))
    store.save("https://b.example", login(OTHER))
    assert resolve(environ).url == "https://b.example"  # the last login
    assert resolve(environ, api_url="https://a.example").token == SECRET
    assert store.remove("https://b.example")
    assert resolve(environ).url == "https://a.example"  # the only one left


def test_several_daemons_and_no_default_must_be_named(environ: dict[str, str]) -> None:
    store = store_of(environ)
    store.save("https://a.example", login(SECRET))
    store.save("https://b.example", login(OTHER))
    store.save("https://c.example", login(OTHER))
    store.remove("https://c.example")  # the last login, gone
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ)
    assert "https://a.example, https://b.example" in str(refused.value)
    assert "--api URL" in str(refused.value)


def test_nothing_anywhere_says_what_to_do(environ: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed) as no_url:
        resolve(environ)
    assert "orch login URL" in str(no_url.value) and "ORCH_TOKEN" in str(no_url.value)
    with pytest.raises(ValidationFailed) as no_token:
        resolve(environ, api_url="https://orch.example")
    assert str(no_token.value) == (
        "token: no token for https://orch.example: run `orch login URL`, "
        "or set ORCH_TOKEN, or pass --token-file FILE"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://orch.example", "expected an http:// or https:// URL"),
        ("orch.example:7400", "expected an http:// or https:// URL"),
        ("https://", "names no host"),
        ("https://orch.example:port", "has a port that is not one"),
        ("https://orch.example/?a=1", "must not have a query or fragment"),
        ("https://oncall:hunter2@orch.example", "must not hold a user or password"),
    ],
)
def test_a_url_that_is_not_a_daemons_is_refused(
    environ: dict[str, str], url: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ, api_url=url)
    assert refused.value.field == "--api"
    assert reason in refused.value.reason
    assert "hunter2" not in str(refused.value)


def test_a_url_is_stored_under_one_spelling() -> None:
    assert api_url("HTTPS://Orch.Example:7400/") == "https://orch.example:7400"
    assert api_url(" http://[::1]:7400/prefix/ ") == "http://[::1]:7400/prefix"


# -- the token -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_token_file_others_may_read_or_change_is_refused(
    tmp_path: Path, environ: dict[str, str], mode: int
) -> None:
    path = token_file(tmp_path / "token", SECRET, mode)
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ, api_url="https://orch.example", token_file=path)
    assert f"chmod 600 {path}" in str(refused.value)
    assert f"mode {mode:04o}" in str(refused.value)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        (f"{SECRET} {OTHER}", "does not hold one token"),
        (f"Bearer {SECRET}", "does not hold one token"),
        ("orch_ünïcode", "does not hold one token"),
    ],
)
def test_a_token_file_holds_one_token(
    tmp_path: Path, environ: dict[str, str], content: str, reason: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(content.encode())
    path.chmod(0o600)
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ, api_url="https://orch.example", token_file=str(path))
    assert reason in str(refused.value)
    assert SECRET not in str(refused.value) and OTHER not in str(refused.value)


def test_a_missing_token_file_is_named(tmp_path: Path, environ: dict[str, str]) -> None:
    missing = tmp_path / "nothing"
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ, api_url="https://orch.example", token_file=str(missing))
    assert str(refused.value) == f"--token-file: cannot read {missing}: No such file or directory"


def test_the_token_is_in_no_repr(environ: dict[str, str]) -> None:
    creds = ApiCredentials("https://orch.example", SECRET, "/ca.pem")
    assert SECRET not in repr(creds) and SECRET not in str(creds)
    assert repr(creds) == "ApiCredentials(url='https://orch.example', ca_file='/ca.pem')"
    assert SECRET not in repr(login(SECRET))
    client = http_client(ApiCredentials("http://127.0.0.1:9", SECRET))
    assert SECRET not in repr(client.headers)


# -- the credentials file --------------------------------------------------------------


def test_the_file_is_0600_in_a_0700_directory_and_written_whole(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    tmp_path.chmod(0o755)
    store = store_of(environ)
    # A shell's usual umask: mkdir alone would make 0755, a file 0644.
    umask = os.umask(0o022)
    try:
        store.save("https://a.example", login(SECRET))
        store.save("https://b.example", login(OTHER))
    finally:
        os.umask(umask)
    path = Path(environ["ORCH_CREDENTIALS_FILE"])
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert mode_of(path.parent.parent) == 0o700  # made by orch, so orch's to close
    assert mode_of(tmp_path) == 0o755  # not made by orch: left as it was
    assert os.listdir(path.parent) == ["credentials.json"]  # no temporary file left
    assert store.urls() == ["https://a.example", "https://b.example"]
    assert store.remove("https://a.example") and not store.remove("https://a.example")
    assert store.remove("https://b.example")
    assert not path.exists()  # the last entry takes the file with it


def test_the_default_place_is_the_xdg_config_directory_kept_0700(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "orch").mkdir(parents=True, mode=0o755)
    store = CredentialsFile.located({"XDG_CONFIG_HOME": str(config)})
    assert store.path == config / "orch" / "credentials.json"
    store.save("https://orch.example", login(SECRET))
    assert mode_of(config / "orch") == 0o700  # orch's own directory, closed
    assert mode_of(store.path) == 0o600
    relative = CredentialsFile.located({"XDG_CONFIG_HOME": "relative/config", "HOME": "/h"})
    assert relative.path == Path.home() / ".config" / "orch" / "credentials.json"


def test_a_credentials_file_others_may_read_is_refused(environ: dict[str, str]) -> None:
    store = store_of(environ)
    store.save("https://orch.example", login(SECRET))
    store.path.chmod(0o644)
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ)
    assert f"chmod 600 {store.path}" in str(refused.value)


def test_a_file_that_is_not_orchs_says_so_without_quoting_it(environ: dict[str, str]) -> None:
    store = store_of(environ)
    store.save("https://orch.example", login(SECRET))
    entry = {"token": SECRET, "role": 3}
    store.path.write_text(json.dumps({"version": 1, "daemons": {"https://orch.example": entry}}))
    with pytest.raises(ValidationFailed) as refused:
        resolve(environ)
    message = str(refused.value)
    assert "is not orch's credentials file" in message and "orch login URL" in message
    assert SECRET not in message
    store.path.write_text("not json")
    with pytest.raises(ValidationFailed, match="is not orch's credentials file"):
        resolve(environ)


# -- the HTTP client -------------------------------------------------------------------


async def test_the_client_sends_the_token_and_no_proxy_from_the_environment_sees_it(
    http_server: SwitchableServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that is not there: a client that used it would fail to connect.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    creds = ApiCredentials(f"http://127.0.0.1:{http_server.port}/prefix", SECRET)
    async with http_client(creds) as client:
        answer = await client.get("/api/orchestration/whoami")
    assert answer.status_code == 200
    (seen,) = http_server.requests
    assert seen.path == "/prefix/api/orchestration/whoami"
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.headers["user-agent"] == USER_AGENT


def test_a_ca_file_it_cannot_use_is_one_line(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValidationFailed, match=f"--ca-file: {not_pem} holds no PEM certificate"):
        http_client(ApiCredentials("https://orch.example", SECRET, str(not_pem)))
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValidationFailed, match=f"cannot read {missing}"):
        http_client(ApiCredentials("https://orch.example", SECRET, str(missing)))
