"""Trigger files: an object dropped under `cluster.trigger.prefix` of `cluster.trigger.bucket` starts one run.

What a trigger file may say, and how it is checked, is in `packwise_app.trigger_file`; this module watches
the bucket and starts the runs.

Exactly one run per file, however often it is seen (a watcher restart, two replicas, the poller and the
Lambda handler both): before anything else the watcher claims the file with a conditional write
(`If-None-Match: *`) of a claim object named by the file's key, ETag and last-modified time. Only the
writer that created the claim goes on; a claim left half-done by a crashed watcher is taken over with
`If-Match` on the claim's ETag once its lease expires, and the run name is derived from the claim, so the
new owner finds a run its predecessor already started instead of starting another.

An invalid file is moved to `<prefix>_rejected/` with `<name>.reason.txt` beside it and starts nothing; a
started file is moved to `<prefix>_done/`. Claims stay in `<prefix>_claims/` (audit: who, when, which run).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote_plus

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError
from packwise_app.configuration import load_config
from packwise_app.trigger_file import (
    MAX_TRIGGER_BYTES,
    RunRequest,
    TriggerError,
    parse_trigger,
)

log = logging.getLogger(__name__)

TRIGGER_SUFFIXES = (".yaml", ".yml", ".json")
CLAIMS, REJECTED, DONE = "_claims/", "_rejected/", "_done/"
CLAIM_LEASE_S = 900.0

# ---- the object store ------------------------------------------------------------------------------


class RunStarter(Protocol):
    """What the watcher needs from the cluster (packwise_app.cluster.Cluster)."""

    def submit(
        self, pipeline: str, params: dict[str, Any], config: PackwiseConfig | None = None, run_name: str | None = None
    ) -> Any: ...

    def find_run(self, run_name: str) -> str | None: ...


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _status(err: Exception) -> int:
    response = getattr(err, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) if isinstance(response, dict) else 0


def _is_precondition_failure(err: Exception) -> bool:
    # 412 PreconditionFailed; 409 ConditionalRequestConflict when two conditional writes race on AWS S3
    return _error_code(err) in {"PreconditionFailed", "ConditionalRequestConflict"} or _status(err) in {409, 412}


def _is_missing(err: Exception) -> bool:
    return _error_code(err) in {"NoSuchKey", "404", "NotFound"} or _status(err) == 404


@dataclass(frozen=True)
class TriggerObject:
    key: str
    etag: str
    last_modified: dt.datetime
    size: int | None = None  # bytes, from the listing or HEAD; checked before the file is read

    @property
    def claim_id(self) -> str:
        # The same upload is the same claim, whoever sees it; uploading the file again is a new trigger.
        ident = f"{self.key}\0{self.etag}\0{self.last_modified.astimezone(dt.UTC).isoformat()}"
        return hashlib.sha256(ident.encode()).hexdigest()[:32]


Outcome = Literal["started", "rejected", "skipped", "already-started", "already-rejected", "gone"]


@dataclass(frozen=True)
class TriggerResult:
    key: str
    outcome: Outcome
    run_id: str | None = None
    reason: str | None = None


@dataclass
class TriggerWatcher:
    """Turns trigger files under `prefix` of `bucket` into runs, exactly one per file."""

    s3: Any  # a boto3 S3 client
    bucket: str
    prefix: str
    base_config: PackwiseConfig
    starter: RunStarter
    owner: str = ""
    lease_s: float = CLAIM_LEASE_S
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.owner = self.owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # ---- listing -------------------------------------------------------------------------------------
    def is_trigger_key(self, key: str) -> bool:
        if not key.startswith(self.prefix):
            return False
        rest = key[len(self.prefix) :]
        return bool(rest) and not rest.startswith(("_", ".")) and rest.lower().endswith(TRIGGER_SUFFIXES)

    def pending(self) -> Iterator[TriggerObject]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                if self.is_trigger_key(item["Key"]):
                    yield TriggerObject(item["Key"], item["ETag"].strip('"'), item["LastModified"], item.get("Size"))

    def head(self, key: str) -> TriggerObject | None:
        try:
            meta = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as err:
            if _is_missing(err):
                return None
            raise
        return TriggerObject(key, meta["ETag"].strip('"'), meta["LastModified"], meta.get("ContentLength"))

    def poll_once(self) -> list[TriggerResult]:
        """Handles every trigger file under the prefix once."""
        return [self.handle(obj) for obj in list(self.pending())]

    def run_forever(
        self, interval_s: float, heartbeat: Path | None = None, stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Polls until `stop()`; touches `heartbeat` after every poll that reached the store (liveness)."""
        while not stop():
            try:
                for result in self.poll_once():
                    if result.outcome in {"started", "rejected"}:
                        log.info("trigger %s: %s %s", result.key, result.outcome, result.run_id or result.reason)
                if heartbeat is not None:
                    heartbeat.touch()
            except Exception:  # the store or KFP hiccuped: log it, the next poll tries again
                log.exception("polling s3://%s/%s failed", self.bucket, self.prefix)
            time.sleep(interval_s)

    # ---- claims --------------------------------------------------------------------------------------
    def _claim_key(self, obj: TriggerObject) -> str:
        return f"{self.prefix}{CLAIMS}{obj.claim_id}.json"

    def _claim_body(self, obj: TriggerObject, state: str, **extra: Any) -> bytes:
        record = {
            "trigger_key": obj.key,
            "etag": obj.etag,
            "last_modified": obj.last_modified.isoformat(),
            "owner": self.owner,
            "state": state,
            "updated_at": self.clock(),
            **extra,
        }
        return json.dumps(record, sort_keys=True).encode()

    def _read_claim(self, claim_key: str) -> tuple[dict[str, Any], str] | None:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=claim_key)
        except Exception as err:
            if _is_missing(err):
                return None
            raise
        return json.loads(got["Body"].read()), got["ETag"]

    def _claim(self, obj: TriggerObject) -> tuple[bool, dict[str, Any] | None]:
        """(True, None) if this watcher now owns the file, (True, old claim) if it took the file over from a
        dead owner, (False, claim) if another claim stands."""
        claim_key = self._claim_key(obj)
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=claim_key, Body=self._claim_body(obj, "claimed"), IfNoneMatch="*"
            )
            return True, None
        except Exception as err:
            if not _is_precondition_failure(err):
                raise
        current = self._read_claim(claim_key)
        if current is None:  # deleted between our write and read: the next poll sees the file anew
            return False, None
        record, etag = current
        expired = record.get("state") == "claimed" and self.clock() - float(record.get("updated_at", 0)) > self.lease_s
        if not expired:
            return False, record
        try:  # take over a claim whose owner died before starting the run or giving up
            self.s3.put_object(
                Bucket=self.bucket,
                Key=claim_key,
                Body=self._claim_body(obj, "claimed", took_over_from=record.get("owner")),
                IfMatch=etag,
            )
            return True, record
        except Exception as err:
            if _is_precondition_failure(err):
                return False, record
            raise

    def _settle(self, obj: TriggerObject, state: str, **extra: Any) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self._claim_key(obj), Body=self._claim_body(obj, state, **extra))

    def _move(self, key: str, folder: str) -> str:
        target = f"{self.prefix}{folder}{key[len(self.prefix) :]}"
        try:
            self.s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key})
        except Exception as err:
            if _is_missing(err):  # already moved by whoever settled it
                return target
            raise
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        return target

    def run_name(self, obj: TriggerObject, request: RunRequest) -> str:
        stem = Path(obj.key[len(self.prefix) :]).stem.lower()
        safe = "".join(c if c.isalnum() else "-" for c in stem).strip("-")[:40] or "trigger"
        # the claim id makes the name unique per upload, so a successor finds its predecessor's run
        return f"{request.run_name or safe}-{obj.claim_id[:10]}"

    # ---- one file ------------------------------------------------------------------------------------
    def handle(self, obj: TriggerObject) -> TriggerResult:
        owned, record = self._claim(obj)
        history = {"took_over_from": record.get("owner")} if owned and record else {}
        if not owned:
            if record and record.get("state") in {"started", "rejected"}:
                # settled by someone else; finish the move if they died before it
                folder = DONE if record["state"] == "started" else REJECTED
                if self.head(obj.key) is not None:
                    self._move(obj.key, folder)
                outcome: Outcome = "already-started" if record["state"] == "started" else "already-rejected"
                return TriggerResult(obj.key, outcome, record.get("run_id"), record.get("reason"))
            return TriggerResult(obj.key, "skipped")
        try:
            if obj.size is not None and obj.size > MAX_TRIGGER_BYTES:  # never read a file that is too big
                raise TriggerError(
                    f"trigger file {obj.key}: {obj.size} bytes; a trigger file is at most {MAX_TRIGGER_BYTES}"
                )
            try:
                # at most one byte past the bound, whatever the object has become since it was listed
                got = self.s3.get_object(Bucket=self.bucket, Key=obj.key, Range=f"bytes=0-{MAX_TRIGGER_BYTES}")
                body = got["Body"].read(MAX_TRIGGER_BYTES + 1)
            except Exception as err:
                if _is_missing(err):
                    return TriggerResult(obj.key, "gone")
                if _error_code(err) != "InvalidRange":  # an empty object has no byte 0
                    raise
                body = b""
            try:
                request = parse_trigger(body, obj.key, self.base_config)
            except TriggerError:
                raise
            except Exception as err:  # anything else about the file must not crash the poll again and again
                log.exception("trigger file %s could not be parsed", obj.key)
                raise TriggerError(f"trigger file {obj.key}: could not be read ({type(err).__name__})") from None
        except TriggerError as err:
            reason = str(err)
            target = self._move(obj.key, REJECTED)
            self.s3.put_object(
                Bucket=self.bucket, Key=f"{target}.reason.txt", Body=(reason + "\n").encode(), ContentType="text/plain"
            )
            self._settle(obj, "rejected", reason=reason, moved_to=target, **history)
            return TriggerResult(obj.key, "rejected", reason=reason)
        name = self.run_name(obj, request)
        run_id = self.starter.find_run(name)
        if run_id is None:
            run_id = str(self.starter.submit(request.pipeline, request.params, request.config, name).run_id)
        self._settle(obj, "started", run_id=run_id, run_name=name, pipeline=request.pipeline, **history)
        self._move(obj.key, DONE)
        return TriggerResult(obj.key, "started", run_id=run_id)

    def conditional_writes_honoured(self) -> bool:
        """Whether the store refuses a second If-None-Match write (old MinIO releases ignore the header)."""
        probe = f"{self.prefix}{CLAIMS}.probe-{uuid.uuid4().hex}"
        self.s3.put_object(Bucket=self.bucket, Key=probe, Body=b"1", IfNoneMatch="*")
        try:
            self.s3.put_object(Bucket=self.bucket, Key=probe, Body=b"2", IfNoneMatch="*")
            return False
        except Exception as err:
            if _is_precondition_failure(err):
                return True
            raise
        finally:
            self.s3.delete_object(Bucket=self.bucket, Key=probe)


# ---- wiring: the in-cluster watcher and the Lambda handler ----------------------------------------


def s3_client(config: PackwiseConfig) -> Any:
    import boto3

    trigger = config.cluster.trigger
    return boto3.client("s3", endpoint_url=trigger.endpoint_url, region_name=trigger.region)


def watcher_for(config: PackwiseConfig, starter: RunStarter | None = None, s3: Any = None) -> TriggerWatcher:
    """The watcher of `config.cluster.trigger`, starting runs on the configured cluster."""
    trigger = config.cluster.trigger
    if not trigger.bucket:
        raise ConfigError("cluster.trigger.bucket is not set; set it to the bucket that receives trigger files")
    if starter is None:
        from packwise_app.cluster import connect

        starter = connect(config)
    return TriggerWatcher(
        s3=s3 if s3 is not None else s3_client(config),
        bucket=trigger.bucket,
        prefix=trigger.prefix,
        base_config=config,
        starter=starter,
    )


def lambda_handler(event: dict[str, Any], context: Any = None, watcher: TriggerWatcher | None = None) -> dict[str, Any]:
    """AWS Lambda entry point for S3 event notifications (ObjectCreated) on the trigger prefix.

    The configuration is read when invoked, from the file named by PACKWISE_CONFIG (packaged with the
    function). The same claim protocol as the poller: an event delivered twice, or a file both the
    Lambda and a watcher see, starts one run.
    """
    if watcher is None:
        path = os.environ.get("PACKWISE_CONFIG")
        watcher = watcher_for(load_config(Path(path) if path else None))
    results: list[dict[str, Any]] = []
    for record in event.get("Records", []):
        s3_info = record.get("s3", {})
        bucket = s3_info.get("bucket", {}).get("name")
        key = unquote_plus(s3_info.get("object", {}).get("key", ""))  # event keys are URL-encoded
        if bucket != watcher.bucket or not watcher.is_trigger_key(key):
            continue  # our own claim/rejected/done writes, or another prefix
        obj = watcher.head(key)  # ETag and LastModified exactly as the poller sees them
        if obj is None:
            results.append({"key": key, "outcome": "gone"})
            continue
        result = watcher.handle(obj)
        results.append({"key": key, "outcome": result.outcome, "run_id": result.run_id, "reason": result.reason})
    return {"results": results}
