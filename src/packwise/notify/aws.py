"""boto3 clients for the AWS notifiers, from the standard credential chain and the notify section."""

from __future__ import annotations

from typing import Any

from packwise.config import NotifyConfig


def aws_client(config: NotifyConfig, service: str) -> Any:
    """A boto3 client for `service` in `notify.aws_region` (or the chain's), at `notify.aws_endpoint_url`."""
    import boto3

    kwargs: dict[str, Any] = {"endpoint_url": config.aws_endpoint_url} if config.aws_endpoint_url else {}
    return boto3.session.Session(region_name=config.aws_region).client(service, **kwargs)


def aws_error(backend: str, err: Exception, fix: str) -> str:
    """One line: the backend, AWS's error code and first message line, and the fix."""
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        text = f"{error.get('Code', '')}: " + (str(error.get("Message", "")).strip().splitlines() or [""])[0]
    else:
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"notify {backend}: {text}; {fix}"
