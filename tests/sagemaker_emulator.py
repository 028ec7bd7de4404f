"""moto's server plus what moto does not do: the XGBoost container's training and batch transform.

moto (ThreadedMotoServer on 127.0.0.1, in this process) serves S3 and the SageMaker control plane; its jobs
are Completed at once and write nothing. The emulator hooks moto's request handlers, records every
request body as the client sent it (so tests assert the requests, not just the success), and after
CreateTrainingJob / CreateTransformJob does what SageMaker's built-in XGBoost 3.0-5 container would:

- training: reads the CSV channels (label first, no header), trains with the job's hyperparameters and
  writes ``<S3OutputPath>/<job>/output/model.tar.gz`` holding ``xgboost-model`` (UBJSON), packed with
  plain ``tarfile``, not by Packwise's save function;
- transform: loads the Model's ``ModelDataUrl``, applies ``InputFilter``, predicts each line, joins the
  input (``JoinSource: Input``), applies ``OutputFilter`` and writes ``<input file>.out`` per input file.

Only the filters Packwise uses are implemented; anything else fails the request loudly.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import numpy as np
import pandas as pd

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/packwise-sagemaker"
BUCKET = "packwise-test-bucket"
RECORDED = (
    "CreateTrainingJob",
    "CreateTransformJob",
    "CreateModel",
    "CreateModelPackage",
    "CreateModelPackageGroup",
    "UpdateModelPackage",
)


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass
class SageMakerEmulator:
    """A running moto server with the container emulation; ``requests`` holds (operation, body) in order."""

    endpoint_url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(region_name=REGION).client(service, endpoint_url=self.endpoint_url)

    def bodies(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for op, body in self.requests if op == operation]

    # -- the container ----------------------------------------------------------------------------------

    def _read_csv_objects(self, prefix_uri: str) -> list[tuple[str, str]]:
        s3 = self.client("s3")
        bucket, prefix = _split(prefix_uri)
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
                out.append((item["Key"], body))
        return sorted(out)

    def train(self, body: dict[str, Any]) -> None:
        import xgboost as xgb

        channels = {c["ChannelName"]: c for c in body["InputDataConfig"]}
        frames = []
        for _, text in self._read_csv_objects(channels["train"]["DataSource"]["S3DataSource"]["S3Uri"]):
            frames.append(pd.read_csv(io.StringIO(text), header=None, dtype=np.float32))
        data = pd.concat(frames).to_numpy(dtype=np.float32)
        params: dict[str, Any] = {}
        for key, value in body["HyperParameters"].items():
            try:
                params[key] = float(value) if "." in value else int(value)
            except ValueError:
                params[key] = value
        rounds = int(params.pop("num_round"))
        booster = xgb.train(params, xgb.DMatrix(data[:, 1:], label=data[:, 0]), num_boost_round=rounds)
        raw = bytes(booster.save_raw(raw_format="ubj"))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("xgboost-model")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        bucket, prefix = _split(body["OutputDataConfig"]["S3OutputPath"])
        key = f"{prefix.rstrip('/')}/{body['TrainingJobName']}/output/model.tar.gz"
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())

    def transform(self, body: dict[str, Any]) -> None:
        import xgboost as xgb

        processing = body.get("DataProcessing", {})
        if processing.get("InputFilter") != "$[1:]" or processing.get("OutputFilter") != "$[0,-1]":
            raise NotImplementedError(f"emulator: unsupported DataProcessing {processing}")
        if processing.get("JoinSource") != "Input" or body["TransformInput"].get("SplitType") != "Line":
            raise NotImplementedError("emulator: expects JoinSource Input and SplitType Line")
        model = self.client("sagemaker").describe_model(ModelName=body["ModelName"])
        bucket, key = _split(model["PrimaryContainer"]["ModelDataUrl"])
        archive = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = tar.extractfile("xgboost-model")
            assert member is not None
            booster = xgb.Booster()
            booster.load_model(bytearray(member.read()))
        source = body["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        _, source_prefix = _split(source)
        out_bucket, out_prefix = _split(body["TransformOutput"]["S3OutputPath"])
        for key, text in self._read_csv_objects(source):
            lines = [line for line in text.split("\n") if line]
            features = [line.split(",")[1:] for line in lines]  # InputFilter $[1:]
            matrix = np.array([[float(v) if v else np.nan for v in row] for row in features], dtype=np.float32)
            prob = booster.predict(xgb.DMatrix(matrix)) if len(lines) else np.array([], dtype=np.float32)
            joined = [f"{line},{float(p)!r}" for line, p in zip(lines, prob, strict=True)]  # JoinSource Input
            kept = [f"{j.split(',')[0]},{j.split(',')[-1]}" for j in joined]  # OutputFilter $[0,-1]
            relative = key[len(source_prefix.rstrip("/")) + 1 :]
            self.client("s3").put_object(
                Bucket=out_bucket,
                Key=f"{out_prefix.rstrip('/')}/{relative}.out",
                Body=("\n".join(kept) + "\n").encode(),
            )


@contextlib.contextmanager
def sagemaker_emulator() -> Iterator[SageMakerEmulator]:
    """Starts moto's server with the emulation hooks; stops it afterwards."""
    from moto.sagemaker.responses import SageMakerResponse
    from moto.server import ThreadedMotoServer

    emulator = SageMakerEmulator()
    originals = {op: getattr(SageMakerResponse, _snake(op)) for op in RECORDED}

    def hooked(op: str) -> Any:
        def handler(self: Any) -> Any:
            body = json.loads(self.body or "{}")
            with emulator._lock:
                emulator.requests.append((op, body))
            result = originals[op](self)
            if op == "CreateTrainingJob":
                emulator.train(body)
            elif op == "CreateTransformJob":
                emulator.transform(body)
            return result

        return handler

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    with contextlib.ExitStack() as stack:
        for op in RECORDED:
            stack.enter_context(mock.patch.object(SageMakerResponse, _snake(op), hooked(op)))
        server.start()
        stack.callback(server.stop)
        host, port = server.get_host_and_port()
        emulator.endpoint_url = f"http://{host}:{port}"
        emulator.client("s3").create_bucket(Bucket=BUCKET)
        yield emulator


def _snake(operation: str) -> str:
    out = ""
    for i, ch in enumerate(operation):
        out += ("_" if i and ch.isupper() else "") + ch.lower()
    return out


def sagemaker_section(emulator: SageMakerEmulator, **overrides: Any) -> dict[str, Any]:
    """The ``sagemaker`` config section pointing at the emulator (fast polling)."""
    return {
        "region": REGION,
        "role_arn": ROLE_ARN,
        "bucket": BUCKET,
        "prefix": "packwise-test",
        "endpoint_url": emulator.endpoint_url,
        "poll_interval_s": 0.05,
        "timeout_s": 120,
        **overrides,
    }


# The built-in XGBoost 3.0-5 image SageMaker publishes for REGION; tests assert requests carry exactly it.
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
