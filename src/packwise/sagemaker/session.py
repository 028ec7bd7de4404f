"""boto3 clients and S3 transfers for the SageMaker backend.

Credentials come from the standard AWS chain only (IRSA web identity on EKS, environment variables, shared
profile, instance role); the configuration holds the region, never a key. ``endpoint_url`` exists for
tests and LocalStack/moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from packwise.config import SageMakerConfig
from packwise.errors import first_line
from packwise.files import sha256_file
from packwise.sagemaker.errors import SageMakerError

T = TypeVar("T")


@dataclass(frozen=True)
class Clients:
    """The two AWS clients every SageMaker step needs."""

    sagemaker: Any
    s3: Any
    region: str


def open_clients(config: SageMakerConfig) -> Clients:
    """SageMaker and S3 clients for ``config.region`` from the default credential chain.

    Raises:
        SageMakerError: No region is configured.
    """
    import boto3
    from botocore.config import Config

    if not config.region:
        raise SageMakerError("sagemaker.region is not set; set it to the region of your bucket and jobs")
    session = boto3.session.Session(region_name=config.region)
    # adaptive retries ride out SageMaker's API throttling when many tasks poll at once
    options: dict[str, Any] = {
        "config": Config(retries={"max_attempts": 10, "mode": "adaptive"}, user_agent_extra="packwise")
    }
    if config.endpoint_url:
        options["endpoint_url"] = config.endpoint_url
    return Clients(session.client("sagemaker", **options), session.client("s3", **options), config.region)


def error_code(err: BaseException) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def aws_call(what: str, call: Callable[[], T]) -> T:
    """Runs one AWS call; credential, permission and endpoint problems become a one-line SageMakerError."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return call()
    except NoCredentialsError:
        raise SageMakerError(
            f"cannot {what}: no AWS credentials found; use IRSA on EKS, AWS_PROFILE or the AWS_* environment "
            "variables (never the config file)"
        ) from None
    except ClientError as err:
        code = error_code(err)
        hint = (
            "check the IAM permissions of the caller (see README: On SageMaker)"
            if "AccessDenied" in code
            else ("see the message for the cause")
        )
        raise SageMakerError(f"cannot {what}: {first_line(err)}; {hint}") from err
    except BotoCoreError as err:
        raise SageMakerError(f"cannot {what}: {first_line(err)}; check sagemaker.region and the network") from err


@dataclass(frozen=True)
class S3Uri:
    """An ``s3://bucket/key`` location."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise SageMakerError(f"{uri!r} is not an s3://bucket/key URI")
        return cls(parsed.netloc, parsed.path.lstrip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, *parts: str) -> S3Uri:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)


def base_uri(config: SageMakerConfig, *parts: str) -> S3Uri:
    """``s3://<bucket>/<prefix>/<parts...>``."""
    if not config.bucket:
        raise SageMakerError("sagemaker.bucket is not set; name the S3 bucket Packwise may write to")
    return S3Uri(config.bucket, "").child(config.prefix, *parts)


def upload_file(clients: Clients, path: Path, uri: S3Uri) -> S3Uri:
    aws_call(f"upload {path.name} to {uri}", lambda: clients.s3.upload_file(str(path), uri.bucket, uri.key))
    return uri


def download_file(clients: Clients, uri: S3Uri, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    aws_call(f"download {uri}", lambda: clients.s3.download_file(uri.bucket, uri.key, str(path)))
    return path


def put_text(clients: Clients, uri: S3Uri, text: str, content_type: str = "text/plain") -> S3Uri:
    body = text.encode("utf-8")
    aws_call(
        f"write {uri}",
        lambda: clients.s3.put_object(Bucket=uri.bucket, Key=uri.key, Body=body, ContentType=content_type),
    )
    return uri


def get_text(clients: Clients, uri: S3Uri) -> str:
    response = aws_call(f"read {uri}", lambda: clients.s3.get_object(Bucket=uri.bucket, Key=uri.key))
    return str(response["Body"].read().decode("utf-8"))


def exists(clients: Clients, uri: S3Uri) -> bool:
    from botocore.exceptions import ClientError

    def head() -> bool:
        try:
            clients.s3.head_object(Bucket=uri.bucket, Key=uri.key)
        except ClientError as err:
            if error_code(err) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    return aws_call(f"read {uri}", head)


def list_keys(clients: Clients, prefix: S3Uri) -> Iterator[str]:
    """Every key under ``prefix`` (a folder: a trailing slash is implied)."""
    folder = prefix.key.rstrip("/") + "/"
    paginator = clients.s3.get_paginator("list_objects_v2")
    pages = aws_call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=prefix.bucket, Prefix=folder)))
    for page in pages:
        for item in page.get("Contents", []):
            yield str(item["Key"])


def delete_keys(clients: Clients, uri: S3Uri) -> None:
    """Removes every object under ``uri`` (a folder); staged inputs of a re-staged job."""
    keys = list(list_keys(clients, uri))
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        aws_call(f"clean {uri}", lambda b=batch: clients.s3.delete_objects(Bucket=uri.bucket, Delete={"Objects": b}))  # type: ignore[misc]


def upload_model_file(clients: Clients, config: SageMakerConfig, model_file: Path) -> S3Uri:
    """Uploads a model.tar.gz once, content-addressed: ``<prefix>/models/<sha256>/model.tar.gz``."""
    uri = base_uri(config, "models", sha256_file(model_file), "model.tar.gz")
    if not exists(clients, uri):
        upload_file(clients, model_file, uri)
    return uri
