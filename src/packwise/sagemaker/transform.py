"""Batch transform: product rows scored by SageMaker's XGBoost container, read back as probabilities.

One SageMaker Model per model file (content-addressed, created once) and one transform job per model and
input set. Inputs are CSV files of ``product_id,features...`` under one S3 folder; the job runs with
``SplitType: Line``, ``BatchStrategy: MultiRecord`` and ``AssembleWith: Line``, drops the id before the
container (``InputFilter: $[1:]``), joins the container's output to the input line (``JoinSource: Input``)
and keeps only the id and the probability (``OutputFilter: $[0,-1]``). Each input file ``x.csv`` comes
back as ``x.csv.out`` with lines ``product_id,probability``.

Used for the evaluation of a candidate and its champion on the validation split and for inference shards.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from packwise.config import SageMakerConfig
from packwise.errors import DataValidationError
from packwise.features import FeatureSpec, build_features
from packwise.files import sha256_file
from packwise.sagemaker.container import xgboost_image_uri
from packwise.sagemaker.csv_format import row_ranges, write_scoring_csv
from packwise.sagemaker.errors import SageMakerError
from packwise.sagemaker.jobs import TRANSFORM, JobHandle, start_or_attach, stop_on_cancel, wait_for_jobs
from packwise.sagemaker.naming import job_name, model_name
from packwise.sagemaker.session import (
    Clients,
    S3Uri,
    aws_call,
    base_uri,
    delete_keys,
    exists,
    get_text,
    list_keys,
    put_text,
    upload_file,
    upload_model_file,
)
from packwise.sagemaker.training import tags

CSV = "text/csv"
INPUT_FILTER = "$[1:]"
OUTPUT_FILTER = "$[0,-1]"
PRODUCT_ID = "product_id"


@dataclass(frozen=True)
class TransformModel:
    """A model file to score with, and the recipe of its input rows; ``key`` names its output column."""

    key: str
    package_type: str
    model_file: Path
    spec: FeatureSpec


def ensure_model(clients: Clients, config: SageMakerConfig, package_type: str, model_file: Path) -> str:
    """The SageMaker Model serving ``model_file`` (uploaded and created once, by content digest)."""
    from botocore.exceptions import ClientError

    digest = sha256_file(model_file)
    name = model_name(package_type, digest)
    try:
        clients.sagemaker.describe_model(ModelName=name)
        return name
    except ClientError:
        pass
    if not config.role_arn:
        raise SageMakerError("sagemaker.role_arn is not set; name the IAM role SageMaker transform jobs run as")
    model_data = upload_model_file(clients, config, model_file)
    request = {
        "ModelName": name,
        "ExecutionRoleArn": config.role_arn,
        "PrimaryContainer": {
            "Image": xgboost_image_uri(clients.region, config.xgboost_image_uri),
            "ModelDataUrl": str(model_data),
        },
        "Tags": tags(config, {"packwise:package-type": package_type, "packwise:model-sha256": digest}),
    }
    try:
        clients.sagemaker.create_model(**request)
    except ClientError as err:
        if "already exists" not in str(err).lower():
            raise SageMakerError(f"cannot create SageMaker model {name}: {err}") from err
    return name


def transform_request(config: SageMakerConfig, model: str, input_uri: S3Uri, output_uri: S3Uri) -> dict[str, Any]:
    """The CreateTransformJob request (without the name)."""
    return {
        "ModelName": model,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": config.transform_max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(input_uri) + "/"}},
            "ContentType": CSV,
            "CompressionType": "None",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": str(output_uri) + "/", "Accept": CSV, "AssembleWith": "Line"},
        "TransformResources": {
            "InstanceType": config.transform_instance_type,
            "InstanceCount": config.transform_instance_count,
        },
        "DataProcessing": {"InputFilter": INPUT_FILTER, "JoinSource": "Input", "OutputFilter": OUTPUT_FILTER},
        "Tags": tags(config, {"packwise:job": "batch-transform"}),
    }


class ScoringRows(Protocol):
    """Products to score, read in order a slice at a time: a shard is never held whole (a 5M-product shard
    read into pandas peaked at 1.1 GiB)."""

    def ids(self) -> pa.Array:
        """The product ids as strings, in order."""
        ...

    def frames(self, rows: int) -> Iterator[pd.DataFrame]:
        """The products in order, `rows` at a time (the last slice shorter): product_id and model inputs."""
        ...

    def write_parquet(self, path: Path) -> None:
        """The products (product_id and model inputs) as one Parquet file."""
        ...


@dataclass(frozen=True)
class FrameRows:
    """`ScoringRows` of a frame in memory (a validation split)."""

    products: pd.DataFrame

    def ids(self) -> pa.Array:
        return pa.array(self.products[PRODUCT_ID].astype(str).to_numpy(), type=pa.string())

    def frames(self, rows: int) -> Iterator[pd.DataFrame]:
        for start, stop in row_ranges(len(self.products), rows):
            yield self.products.iloc[start:stop]

    def write_parquet(self, path: Path) -> None:
        self.products.to_parquet(path, index=False, compression="zstd")


@dataclass(frozen=True)
class FileRows:
    """`ScoringRows` of a Parquet file (an inference shard), its `columns` only, read batch by batch."""

    path: Path
    columns: Sequence[str]

    def ids(self) -> pa.Array:
        return self._ids

    @functools.cached_property
    def _ids(self) -> pa.Array:
        """Read once: the scoring call checks and matches them, its caller writes them beside the scores."""
        import pyarrow.parquet as pq

        ids = pq.read_table(self.path, columns=[PRODUCT_ID], use_threads=False).column(0)
        return ids.cast(pa.string()).combine_chunks()

    def _tables(self, rows: int) -> Iterator[pa.Table]:
        """The file's rows as tables of exactly `rows` rows (the last shorter), whatever its row groups."""
        import pyarrow.parquet as pq

        from packwise.arrow_rows import fixed_size_tables

        source = pq.ParquetFile(self.path, pre_buffer=False)
        batches = source.iter_batches(batch_size=rows, columns=list(self.columns), use_threads=False)
        return fixed_size_tables(batches, rows)

    def frames(self, rows: int) -> Iterator[pd.DataFrame]:
        for table in self._tables(rows):
            yield table.to_pandas()

    def write_parquet(self, path: Path) -> None:
        import pyarrow.parquet as pq

        schema = pq.read_schema(self.path)
        projected = pa.schema([schema.field(c) for c in self.columns])
        with pq.ParquetWriter(path, projected, compression="zstd") as writer:
            for table in self._tables(131_072):
                writer.write_table(table)


def as_rows(products: pd.DataFrame | ScoringRows) -> ScoringRows:
    """`products` as `ScoringRows` (a frame is wrapped in `FrameRows`)."""
    return FrameRows(products) if isinstance(products, pd.DataFrame) else products


def stage_inputs(
    clients: Clients, products: ScoringRows, spec: FeatureSpec, input_uri: S3Uri, rows_per_file: int, scratch: Path
) -> None:
    """Writes the products' feature rows as CSV files under ``input_uri``, once, one file's rows at a time.

    The folder is content-addressed; a marker beside it (not inside: the job reads the whole folder) says
    it is complete, so a retried step never rewrites files a running job is reading.
    """
    from packwise.features import FeatureRows

    marker = S3Uri(input_uri.bucket, input_uri.key + ".staged")
    if exists(clients, marker):
        return
    delete_keys(clients, input_uri)  # parts of an interrupted earlier staging
    count = 0
    for index, frame in enumerate(products.frames(rows_per_file)):
        path = scratch / f"part-{index:05d}.csv"
        # the feature rows of one file at a time (a row's features depend on that row only): a 5M-row
        # shard's whole matrix would be 660 MB beside its frame
        rows = build_features(frame, spec)
        write_scoring_csv(frame[PRODUCT_ID].astype(str).to_numpy(), FeatureRows(dense=rows.dense), path)
        upload_file(clients, path, input_uri.child(path.name))
        path.unlink()
        count += 1
    put_text(clients, marker, f"{count} files\n")


def job_locations(described: dict[str, Any]) -> tuple[S3Uri, S3Uri]:
    """Input folder and output folder of a transform job, from its description."""
    source = described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    output = described["TransformOutput"]["S3OutputPath"]
    return S3Uri.parse(source.rstrip("/")), S3Uri.parse(output.rstrip("/"))


def _read_output(clients: Clients, uri: S3Uri) -> pd.DataFrame:
    text = get_text(clients, uri)
    return pd.read_csv(io.StringIO(text), header=None, names=[PRODUCT_ID, "probability"], dtype={PRODUCT_ID: str})


def _input_names(clients: Clients, input_uri: S3Uri) -> list[str]:
    return sorted(k.removeprefix(input_uri.key.rstrip("/") + "/") for k in list_keys(clients, input_uri))


def read_probabilities(clients: Clients, input_uri: S3Uri, output_uri: S3Uri, ids: pa.Array) -> np.ndarray | None:
    """The probabilities of a finished job in `ids` order (float32), one output file at a time; None when
    the outputs do not hold exactly those products once each.

    Input file ``k`` holds the products after those of the files before it, so its ``.out`` file must
    return exactly the next ids (in any order within the file).
    """
    prob = np.empty(len(ids), dtype=np.float32)
    offset = 0
    for name in _input_names(clients, input_uri):
        out = _read_output(clients, output_uri.child(f"{name}.out"))
        returned = pa.array(out[PRODUCT_ID], type=pa.string(), from_pandas=True)
        order = output_order(returned, ids.slice(offset, len(out)))
        if order is None:
            return None
        values = out["probability"].to_numpy(dtype=np.float32)
        prob[offset : offset + len(out)] = values if order is IN_ORDER else values[order]
        offset += len(out)
    return prob if offset == len(ids) else None


# `output_order`'s answer when the rows came back in the order sent
IN_ORDER = np.empty(0, dtype=np.int64)


def output_order(returned: pa.Array | pa.ChunkedArray, ids: pa.Array) -> np.ndarray | None:
    """Where each of `ids` is among a job's `returned` product ids (`IN_ORDER` when row for row the same);
    None unless they are exactly those products, once each."""
    import pyarrow.compute as pc

    got = returned.cast(pa.string())
    if isinstance(got, pa.ChunkedArray):
        got = got.combine_chunks()
    if len(got) != len(ids) or got.null_count:
        return None
    if len(ids) == 0 or pc.all(pc.equal(got, ids)).as_py():
        return IN_ORDER
    if pc.count_distinct(got).as_py() != len(got):
        return None
    index = pc.index_in(ids, value_set=got)
    if index.null_count:
        return None
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


def check_unique_ids(ids: pa.Array) -> None:
    """Raises unless every product id appears once.

    Raises:
        DataValidationError: An id appears twice (the message names the first).
    """
    import pyarrow.compute as pc

    if len(ids) and pc.count_distinct(ids).as_py() != len(ids):
        series = pd.Series(ids.to_numpy(zero_copy_only=False), dtype=object)
        raise DataValidationError(
            f"product id {series[series.duplicated()].iloc[0]!r} appears twice; score unique products"
        )


@dataclass(frozen=True)
class TransformRun:
    """One transform job of a scoring call."""

    key: str
    job: JobHandle
    described: dict[str, Any]


def score_with_transform(
    clients: Clients,
    config: SageMakerConfig,
    products: pd.DataFrame | ScoringRows,
    models: Sequence[TransformModel],
    kind: str,
    fingerprint: str,
    identity: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], list[TransformRun]]:
    """Scores ``products`` with every model in parallel transform jobs; probabilities in ``products`` order.

    Args:
        clients: AWS clients.
        config: The ``sagemaker`` section.
        products: Products with ``product_id`` (unique) and the models' input columns: a frame, or
            `ScoringRows` read a file's rows at a time (a shard: `FileRows`).
        models: The models (one job each; models sharing a recipe share the staged input).
        kind: ``eval`` or ``score``, part of the job names.
        fingerprint: Fingerprint of the product data, part of the job and input names.
        identity: More of what decides the inputs (e.g. the shard), part of the names.

    Returns:
        Probabilities per model key (float32, aligned with ``products``) and the jobs that produced them.

    Raises:
        DataValidationError: Duplicate product ids.
        SageMakerError: An output does not match the input ids.
        JobFailedError, JobTimeoutError: A job failed or took too long.
    """
    rows = as_rows(products)
    ids = rows.ids()
    check_unique_ids(ids)
    jobs: list[JobHandle] = []
    planned: list[tuple[str, JobHandle]] = []
    with stop_on_cancel(clients.sagemaker, jobs), tempfile.TemporaryDirectory(prefix="packwise-transform-") as tmp:
        for index, model in enumerate(models):
            sm_model = ensure_model(clients, config, model.package_type, model.model_file)
            recipe = hashlib.sha256("\0".join((model.spec.to_json(), fingerprint, *identity)).encode()).hexdigest()
            input_uri = base_uri(config, "transform", "input", fingerprint[:16] or "data", recipe[:16])
            base = job_name(kind, model.package_type, fingerprint, sm_model, *identity)
            output_uri = base_uri(config, "transform", "output", base)
            scratch = Path(tmp) / f"in-{index}"

            def stage(_: str, uri: S3Uri = input_uri, spec: FeatureSpec = model.spec, folder: Path = scratch) -> None:
                folder.mkdir()
                stage_inputs(clients, rows, spec, uri, config.transform_rows_per_file, folder)

            request = transform_request(config, sm_model, input_uri, output_uri)

            def made(_: str, r: dict[str, Any] = request) -> dict[str, Any]:
                return r

            job = start_or_attach(clients.sagemaker, TRANSFORM, base, made, stage, time.sleep, config.poll_interval_s)
            jobs.append(job)
            planned.append((model.key, job))
        described = wait_for_jobs(clients.sagemaker, jobs, config.poll_interval_s, config.timeout_s)
    probabilities: dict[str, np.ndarray] = {}
    runs = []
    for key, job in planned:
        input_uri, output_uri = job_locations(described[job.name])
        prob = read_probabilities(clients, input_uri, output_uri, ids)
        if prob is None:
            raise SageMakerError(
                f"{key}: transform job {job.name} did not return exactly the {len(ids)} products it was given "
                f"(rows missing, repeated or of other ids); check its output under {output_uri}"
            )
        probabilities[key] = prob
        runs.append(TransformRun(key, job, described[job.name]))
    return probabilities, runs


def aws_list_transform_jobs(clients: Clients, name_contains: str) -> list[str]:
    """Names of transform jobs containing ``name_contains`` (diagnostics and tests)."""
    response = aws_call(
        "list transform jobs", lambda: clients.sagemaker.list_transform_jobs(NameContains=name_contains, MaxResults=100)
    )
    return [str(j["TransformJobName"]) for j in response.get("TransformJobSummaries", [])]
