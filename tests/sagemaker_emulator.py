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

Jobs on Packwise's own image (``sagemaker.training_image: packwise``; any training image other than the
built-in one, and every CreateProcessingJob) run the container entry (`packwise.sagemaker.entry`) in
this process on a temporary directory laid out as SageMaker mounts ``/opt/ml``: each channel's or
ProcessingInput's S3 objects are downloaded to its local path, the hyperparameters written to
``input/config/hyperparameters.json``; afterwards ``model/`` is packed into the job's
``output/model.tar.gz`` (as SageMaker does) and each ProcessingOutput's local path is uploaded. A failing
entry marks the job Failed in moto, with ``output/failure`` as its FailureReason.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
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
    "CreateProcessingJob",
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

    # -- Packwise's image ---------------------------------------------------------------------------------

    def _download_prefix(self, uri: str, local: Path) -> None:
        """SageMaker's S3Prefix download: every object under ``uri`` into ``local`` (a key that names one
        object lands under its base name)."""
        s3 = self.client("s3")
        bucket, prefix = _split(uri)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                relative = key.rsplit("/", 1)[-1] if key == prefix else key[len(prefix) :].lstrip("/")
                target = local / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def _fail_job(self, collection: str, name: str, root: Path, status_attr: str) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sagemaker.models import sagemaker_backends

        job = getattr(sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION], collection)[name]
        setattr(job, status_attr, "Failed")
        failure = root / "output" / "failure"
        job.failure_reason = failure.read_text().strip() if failure.exists() else "AlgorithmError: exit code 1"

    def train_packwise(self, body: dict[str, Any]) -> None:
        from packwise.sagemaker.entry import run

        with tempfile.TemporaryDirectory(prefix="sm-emulator-train-") as tmp:
            root = Path(tmp)
            for channel in body["InputDataConfig"]:
                assert channel["ContentType"] == "application/x-parquet", channel
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                self._download_prefix(uri, root / "input" / "data" / channel["ChannelName"])
            (root / "input" / "config").mkdir(parents=True)
            (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(body["HyperParameters"]))
            (root / "model").mkdir()
            if run("train", root) != 0:
                self._fail_job("training_jobs", body["TrainingJobName"], root, "training_job_status")
                return
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                for path in sorted((root / "model").rglob("*")):
                    tar.add(path, arcname=str(path.relative_to(root / "model")), recursive=False)
            bucket, prefix = _split(body["OutputDataConfig"]["S3OutputPath"])
            key = f"{prefix.rstrip('/')}/{body['TrainingJobName']}/output/model.tar.gz"
            self.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())

    def process(self, body: dict[str, Any]) -> None:
        from packwise.sagemaker.entry import run

        entry = body["AppSpecification"].get("ContainerEntrypoint")
        if entry != ["python", "-m", "packwise.sagemaker.entry", "score"]:
            raise NotImplementedError(f"emulator: unsupported ContainerEntrypoint {entry}")

        def local(path: str) -> Path:
            assert path.startswith("/opt/ml/processing/"), path
            return root / path.removeprefix("/opt/ml/")

        with tempfile.TemporaryDirectory(prefix="sm-emulator-processing-") as tmp:
            root = Path(tmp)
            for item in body["ProcessingInputs"]:
                self._download_prefix(item["S3Input"]["S3Uri"], local(item["S3Input"]["LocalPath"]))
            if run("score", root) != 0:
                self._fail_job("processing_jobs", body["ProcessingJobName"], root, "processing_job_status")
                return
            for output in body["ProcessingOutputConfig"]["Outputs"]:
                folder = local(output["S3Output"]["LocalPath"])
                bucket, prefix = _split(output["S3Output"]["S3Uri"])
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    key = f"{prefix.rstrip('/')}/{path.relative_to(folder)}"
                    self.client("s3").put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

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
            if op == "CreateTrainingJob" and body["AlgorithmSpecification"]["TrainingImage"] != XGBOOST_IMAGE:
                emulator.train_packwise(body)
            elif op == "CreateTrainingJob":
                emulator.train(body)
            elif op == "CreateProcessingJob":
                emulator.process(body)
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
# Packwise's train image as skaffold's eks profile would push it (``sagemaker.packwise_image_uri``).
PACKWISE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/packwise-train:test"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
