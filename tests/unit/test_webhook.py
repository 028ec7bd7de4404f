"""The webhook against a real HTTP server on 127.0.0.1: retried on 5xx, redirects refused, token never printed.

The old notifier followed a 301/302/303 to any host as a GET without the body and called it a success,
printed the whole URL (token included) in its errors, and accepted file:// URLs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from packwise.config import NotifyConfig, parse_config
from packwise.errors import ConfigError, PackwiseError
from packwise.notify import open_notifier
from packwise.notify.webhook import WebhookNotifier, redacted, webhook_url

TOKEN = "T0KEN-s3cr3t-9f8e7d"


@dataclass
class Receiver:
    """What the server answers, in order (the last one repeats), and every request it got."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = f"/hooks/{TOKEN}") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={TOKEN}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append({"method": self.command, "path": self.path, "body": body})
            status, headers = state.answers[min(len(state.requests) - 1, len(state.answers) - 1)]
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _answer  # noqa: N815 - http.server's naming
        do_GET = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _notifier(url: str, retries: int = 3) -> WebhookNotifier:
    return WebhookNotifier(url, timeout_s=5.0, retries=retries, backoff_s=0.01)


def test_a_5xx_is_retried_with_backoff_and_the_message_arrives_once_accepted(receiver: Receiver) -> None:
    receiver.answers = [(500, {}), (503, {}), (200, {})]
    _notifier(receiver.url()).send("subject", "body", {"run_id": "r1"})
    assert [r["method"] for r in receiver.requests] == ["POST"] * 3
    sent = json.loads(receiver.requests[-1]["body"])
    assert sent["text"] == "*subject*\nbody" and sent["packwise"] == {"run_id": "r1"}


def test_a_lasting_5xx_is_a_failure_after_the_retries_without_the_token(receiver: Receiver) -> None:
    receiver.answers = [(500, {})]
    with pytest.raises(PackwiseError) as err:
        _notifier(receiver.url(), retries=2).send("s", "b", {})
    assert len(receiver.requests) == 3
    message = str(err.value)
    assert f"http://127.0.0.1:{receiver.port}/… answered HTTP 500 after 3 attempts" in message
    assert TOKEN not in message and "hooks" not in message and "\n" not in message


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_reported_not_followed(receiver: Receiver, status: int) -> None:
    receiver.answers = [(status, {"Location": f"http://evil.example:8080/steal?t={TOKEN}"}), (200, {})]
    with pytest.raises(PackwiseError) as err:
        _notifier(receiver.url()).send("s", "b", {})
    assert len(receiver.requests) == 1  # nothing sent to the Location, nothing sent again
    message = str(err.value)
    assert f"answered HTTP {status} (redirect to http://evil.example:8080/…), not followed" in message
    assert TOKEN not in message


def test_a_4xx_fails_at_once(receiver: Receiver) -> None:
    receiver.answers = [(403, {})]
    with pytest.raises(PackwiseError, match="answered HTTP 403; the message was not delivered"):
        _notifier(receiver.url()).send("s", "b", {})
    assert len(receiver.requests) == 1


def test_no_server_is_a_failure_naming_only_scheme_and_host(receiver: Receiver) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PackwiseError) as err:
        _notifier(f"http://127.0.0.1:{port}/hooks/{TOKEN}", retries=1).send("s", "b", {})
    message = str(err.value)
    assert message.startswith(f"notify webhook http://127.0.0.1:{port}/… failed after 2 attempts")
    assert TOKEN not in message


def _notify(**values: Any) -> NotifyConfig:
    return NotifyConfig.model_validate({"backend": "webhook", "webhook_url_env": "PACKWISE_WEBHOOK_URL", **values})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"file:///etc/passwd?{TOKEN}", "has a file:// URL; only http:// and https:// webhooks are sent"),
        (f"ftp://host/{TOKEN}", "has a ftp:// URL"),
        (f"hooks.example/{TOKEN}", "has no URL scheme"),
        (f"http:///{TOKEN}", "has a http:// URL"),
        ("", "$PACKWISE_WEBHOOK_URL is not set in this environment"),
    ],
)
def test_only_http_and_https_urls_are_accepted(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        webhook_url(_notify(), {"PACKWISE_WEBHOOK_URL": value})
    assert expected in str(err.value)
    assert TOKEN not in str(err.value)


def test_the_url_comes_from_the_named_env_var(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKWISE_WEBHOOK_URL", receiver.url())
    open_notifier(_notify(retry_backoff_s=0)).send("s", "b", {})
    assert receiver.requests[0]["path"] == f"/hooks/{TOKEN}?token={TOKEN}"


def test_the_old_plain_url_key_is_refused_with_the_migration_and_without_the_secret() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"notify": {"backend": "webhook", "webhook_url": f"https://hooks.example/{TOKEN}"}})
    message = str(err.value)
    assert "notify.webhook_url is no longer accepted" in message and "set notify.webhook_url_env" in message
    assert TOKEN not in message
    with pytest.raises(ConfigError, match="is not an environment variable name"):
        parse_config({"notify": {"backend": "webhook", "webhook_url_env": f"https://hooks.example/{TOKEN}"}})
    with pytest.raises(ConfigError, match=r"notify\.webhook_url_env is required when notify\.backend is webhook"):
        parse_config({"notify": {"backend": "webhook", "webhook_url_env": None}})


def test_a_tracking_uri_with_credentials_is_refused_pointing_to_the_env_vars() -> None:
    for uri in (f"https://admin:{TOKEN}@mlflow.example:5000", f"http://mlflow.example/?token={TOKEN}"):
        with pytest.raises(ConfigError) as err:
            parse_config({"registry": {"tracking_uri": uri}})
        message = str(err.value)
        assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in message
        assert TOKEN not in message and "admin" not in message
    assert parse_config({"registry": {"tracking_uri": "http://mlflow.kubeflow:5000"}}).registry.tracking_uri


def test_redacted_keeps_scheme_host_and_port_only() -> None:
    assert redacted(f"https://user:{TOKEN}@hooks.example:8443/a/{TOKEN}?t={TOKEN}#x") == "https://hooks.example:8443/…"
    assert redacted("http://[::1/") == "<unparsable URL>"


@pytest.mark.parametrize("value", [None, f"file:///tmp/{TOKEN}"])
def test_train_refuses_an_unusable_webhook_before_the_run(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    import yaml
    from typer.testing import CliRunner

    from packwise_app.cli import app

    if value is None:
        monkeypatch.delenv("PACKWISE_WEBHOOK_URL", raising=False)
    else:
        monkeypatch.setenv("PACKWISE_WEBHOOK_URL", value)
    root = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(root)}, "notify": {"backend": "webhook"}}))
    result = CliRunner().invoke(app, ["train", "--week", "1", "--config", str(config)])
    assert result.exit_code == 2, result.output
    expected = "is not set in this environment" if value is None else "has a file:// URL"
    assert f"notify.webhook_url_env: $PACKWISE_WEBHOOK_URL {expected}" in result.output.replace("\n", "")
    assert TOKEN not in result.output
    assert not root.exists()  # the run never started
