"""SageMaker scoring inputs read a slice at a time (`FileRows`), and the job outputs matched back to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.errors import DataValidationError
from packwise.sagemaker.transform import IN_ORDER, FileRows, FrameRows, check_unique_ids, output_order
from packwise.synthetic import generate_products
from tests.s3_server import S3Server

COLUMNS = ["product_id", "weight_kg", "category"]


@pytest.fixture
def shard(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    products = generate_products(2_500, seed=4)
    path = tmp_path / "shard-00000.parquet"
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), path, row_group_size=1_000)
    return path, products


def test_file_rows_give_exact_slices_across_row_groups_and_only_their_columns(
    shard: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    path, products = shard
    rows = FileRows(path, COLUMNS)
    frames = list(rows.frames(700))
    assert [len(f) for f in frames] == [700, 700, 700, 400]  # row groups of 1,000 do not show through
    whole = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(whole, products[COLUMNS], check_dtype=False)
    assert rows.ids().to_pylist() == products["product_id"].tolist()
    rows.write_parquet(tmp_path / "staged.parquet")
    staged = pq.read_table(tmp_path / "staged.parquet")
    assert staged.column_names == COLUMNS and staged.num_rows == len(products)
    # a frame in memory and the same rows in a file stage the same slices
    in_memory = [f.reset_index(drop=True) for f in FrameRows(products[COLUMNS]).frames(700)]
    for a, b in zip(in_memory, frames, strict=True):
        pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_a_repeated_id_is_named() -> None:
    check_unique_ids(pa.array(["a", "b", "c"]))
    with pytest.raises(DataValidationError, match="product id 'b' appears twice; score unique products"):
        check_unique_ids(pa.array(["a", "b", "c", "b"]))


def test_job_output_rows_are_matched_back_to_the_products_or_refused() -> None:
    ids = pa.array(["a", "b", "c", "d"])
    assert output_order(pa.chunked_array([ids]), ids) is IN_ORDER
    shuffled = pa.chunked_array([["c", "a"], ["d", "b"]])
    order = output_order(shuffled, ids)
    assert order is not None and np.asarray(shuffled.to_pylist())[order].tolist() == ["a", "b", "c", "d"]
    for wrong in (["a", "b", "c"], ["a", "b", "c", "c"], ["a", "b", "c", "e"], ["a", "b", None, "d"]):
        assert output_order(pa.chunked_array([pa.array(wrong, pa.string())]), ids) is None, wrong


def test_transform_outputs_are_matched_file_by_file_or_refused(s3: S3Server) -> None:
    import boto3

    from packwise.sagemaker.session import Clients, S3Uri
    from packwise.sagemaker.transform import read_probabilities

    client = s3.client()
    clients = Clients(sagemaker=boto3.client("sagemaker", region_name="us-east-1"), s3=client, region="us-east-1")
    ids = pa.array([f"P{i}" for i in range(5)])

    def job(outputs: list[str], name: str) -> tuple[S3Uri, S3Uri]:
        for k, text in enumerate(outputs):
            client.put_object(Bucket=s3.bucket, Key=f"{name}/in/part-{k:05d}.csv", Body=b"x")
            client.put_object(Bucket=s3.bucket, Key=f"{name}/out/part-{k:05d}.csv.out", Body=text.encode())
        return S3Uri(s3.bucket, f"{name}/in"), S3Uri(s3.bucket, f"{name}/out")

    # each file's lines in any order within the file: the probabilities come back in product order
    good = job(["P1,0.1\nP0,0.0\nP2,0.2\n", "P4,0.4\nP3,0.3\n"], "good")
    prob = read_probabilities(clients, *good, ids)
    assert prob is not None and prob.dtype == np.float32
    np.testing.assert_allclose(prob, [0.0, 0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    for name, outputs in {
        "missing": ["P0,0\nP1,0\nP2,0\n", "P3,0\n"],
        "repeated": ["P0,0\nP1,0\nP1,0\n", "P3,0\nP4,0\n"],
        "foreign": ["P0,0\nP1,0\nP9,0\n", "P3,0\nP4,0\n"],
        "across-files": ["P0,0\nP1,0\nP3,0\n", "P2,0\nP4,0\n"],
        "extra": ["P0,0\nP1,0\nP2,0\n", "P3,0\nP4,0\nP5,0\n"],
    }.items():
        assert read_probabilities(clients, *job(outputs, name), ids) is None, name
