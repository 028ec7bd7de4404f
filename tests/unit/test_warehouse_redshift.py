"""The Redshift warehouse against the Data API (botocore Stubber: the SQL, IAM role, S3 paths and the
transaction are asserted) with S3 on moto's server, and its swap SQL run for real on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from packwise.config import WarehouseConfig
from packwise.errors import InjectedFault, WarehouseError
from packwise.predictions import (
    PREDICTION_RUNS,
    _stage_name,
    current_predictions,
    ensure_tables,
    load_predictions,
    read_watermark,
)
from packwise.scoring import prob_column
from packwise.snapshot import extract_snapshot
from packwise.warehouse import QueryError, Warehouse, open_warehouse
from packwise.warehouse.redshift import RedshiftWarehouse
from packwise.warehouse.sql import StagedRun, create_stage, literal, render, swap_statements
from tests.sagemaker_emulator import BUCKET, REGION
from tests.unit.test_inference_loader import TYPES, V2, _ids, scored_file

ROLE = "arn:aws:iam::123456789012:role/packwise-redshift"
STAGING = f"s3://{BUCKET}/redshift-staging"
_S3_URL = re.compile(r"s3://([^/']+)/([^']+)")


class DataApi:
    """A stubbed redshift-data client that records every call's parameters, in order.

    `on_sql` callbacks play Redshift's side effects (UNLOAD writing its parts to S3)."""

    def __init__(self) -> None:
        self.client = boto3.session.Session(region_name=REGION).client("redshift-data")
        self.stub = Stubber(self.client)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.on_sql: list[Any] = []
        self.client.meta.events.register("provide-client-params.redshift-data", self._record)
        self.stub.activate()

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))
        for hook in self.on_sql:
            hook(model.name, params)

    def ok(
        self,
        rows: list[list[Any]] | None = None,
        columns: list[tuple[str, str]] | None = None,
        call: str = "execute_statement",
        status: str = "FINISHED",
        error: str | None = None,
    ) -> None:
        sid = str(uuid.uuid4())
        self.stub.add_response(call, {"Id": sid})
        if status != "FINISHED":
            self.stub.add_response("describe_statement", {"Id": sid, "Status": "STARTED"}, {"Id": sid})
        described: dict[str, Any] = {"Id": sid, "Status": status, "HasResultSet": rows is not None}
        if error:
            described["Error"] = error
        self.stub.add_response("describe_statement", described, {"Id": sid})
        if rows is not None and status == "FINISHED":
            records = [[_field(v) for v in row] for row in rows]
            metadata = [{"name": n, "typeName": t} for n, t in columns or []]
            self.stub.add_response(
                "get_statement_result", {"Records": records, "ColumnMetadata": metadata, "TotalNumRows": len(rows)}
            )

    def sql(self, call: str = "ExecuteStatement") -> list[str]:
        return [p["Sql"] for name, p in self.calls if name == call]


def _field(value: Any) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


@pytest.fixture
def s3(emulator: Any) -> Any:
    return emulator.client("s3")


@pytest.fixture
def api() -> DataApi:
    return DataApi()


def _open(api: DataApi, s3: Any, **kw: Any) -> RedshiftWarehouse:
    api.ok()  # the probe
    return RedshiftWarehouse(
        api.client,
        s3,
        database="dev",
        iam_role=ROLE,
        s3_staging=STAGING,
        workgroup="packwise",
        secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:rs",
        poll_s=0,
        sleep=lambda _: None,
        **kw,
    )


def _objects(s3: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_open_probes_the_workgroup_with_the_secret_and_satisfies_the_protocol(api: DataApi, s3: Any) -> None:
    wh = _open(api, s3)
    assert isinstance(wh, Warehouse)
    name, params = api.calls[0]
    assert name == "ExecuteStatement" and params == {
        "Database": "dev",
        "WorkgroupName": "packwise",
        "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rs",
        "Sql": "SELECT 1",
    }


def test_extract_unloads_to_s3_with_the_role_then_streams_the_parts_in_order(
    api: DataApi, s3: Any, tmp_path: Path
) -> None:
    wh = _open(api, s3)
    rows = pa.table({"product_id": [f"P{i:04d}" for i in range(10)], "week": pa.array(range(10), pa.int32())})

    def redshift_unloads(name: str, params: dict[str, Any]) -> None:
        if name == "ExecuteStatement" and params["Sql"].startswith("UNLOAD"):
            bucket, key = _S3_URL.search(params["Sql"].split(" TO ")[1]).groups()  # type: ignore[union-attr]
            for part, (lo, hi) in enumerate([(0, 6), (6, 10)]):  # two parts, in order, as PARALLEL OFF writes
                local = tmp_path / f"part{part}"
                pq.write_table(rows.slice(lo, hi - lo), local)
                s3.upload_file(str(local), bucket, f"{key}00{part}.parquet")

    api.on_sql.append(redshift_unloads)
    api.ok()
    n = wh.copy_query_to_parquet(
        "SELECT * FROM labels WHERE week <= $week AND source <> 'it''s'", {"week": 3}, tmp_path / "out.parquet",
        ["product_id"],
    )  # fmt: skip
    assert n == 10
    assert pq.read_table(tmp_path / "out.parquet").equals(rows)
    unload = api.sql()[-1]
    match = re.fullmatch(
        r"UNLOAD \('SELECT \* FROM \(\nSELECT \* FROM labels WHERE week <= 3 AND source <> ''it''''s''\n\) "
        r"AS packwise_ordered ORDER BY product_id'\) TO 's3://packwise-test-bucket/redshift-staging/unload/"
        r"([0-9a-f]{32})/part_' IAM_ROLE 'arn:aws:iam::123456789012:role/packwise-redshift' "
        r"FORMAT AS PARQUET PARALLEL OFF",
        unload,
    )
    assert match, unload
    assert _objects(s3, f"redshift-staging/unload/{match.group(1)}/") == []  # parts removed once read


def test_a_failed_unload_is_one_line_with_redshifts_error_and_leaves_no_snapshot(
    api: DataApi, s3: Any, config_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = _open(api, s3)
    api.ok(status="FAILED", error="ERROR: S3ServiceException:Access Denied,Status 403\nDETAIL: bucket policy")
    monkeypatch.setattr(RedshiftWarehouse, "from_config", classmethod(lambda cls, cfg, read_only=False: wh))
    cfg = config_factory(
        warehouse={
            "backend": "redshift", "redshift_workgroup": "packwise", "redshift_database": "dev",
            "redshift_iam_role": ROLE, "redshift_s3_staging": STAGING,
        }
    )  # fmt: skip
    with pytest.raises(WarehouseError) as info:
        extract_snapshot(cfg, week=1)
    message = str(info.value)
    assert message == (
        "warehouse.products_query failed for week 1: redshift: ERROR: S3ServiceException:Access Denied,Status 403; "
        "fix warehouse.products_query in the config"
    )
    assert not [p for p in cfg.storage.snapshots.glob("*") if not p.name.startswith(".")]
    assert not list(cfg.storage.snapshots.glob(".tmp-*"))


def test_a_missing_table_is_redshifts_one_line_error(api: DataApi, s3: Any, tmp_path: Path) -> None:
    wh = _open(api, s3)
    api.ok(status="FAILED", error='ERROR: relation "products" does not exist')
    with pytest.raises(QueryError, match=r'^redshift: ERROR: relation "products" does not exist$'):
        wh.copy_query_to_parquet("SELECT * FROM products", None, tmp_path / "p.parquet")
    assert not (tmp_path / "p.parquet").exists()


def test_a_statement_past_the_timeout_is_cancelled(api: DataApi, s3: Any) -> None:
    wh = _open(api, s3, timeout_s=0)
    sid = "slow-1"
    api.stub.add_response("execute_statement", {"Id": sid})
    api.stub.add_response("describe_statement", {"Id": sid, "Status": "STARTED"}, {"Id": sid})
    api.stub.add_response("cancel_statement", {"Status": True}, {"Id": sid})
    with pytest.raises(QueryError, match=r"still STARTED after 0 s \(cancelled\); raise warehouse.statement_timeout_s"):
        wh.execute("VACUUM predictions")


def test_wrong_credentials_and_a_missing_cluster_are_one_line_errors(api: DataApi, s3: Any) -> None:
    api.stub.add_client_error(
        "execute_statement", service_error_code="ValidationException",
        service_message="Redshift endpoint doesn't exist in this region.\nmore",
    )  # fmt: skip
    with pytest.raises(WarehouseError) as info:
        RedshiftWarehouse(api.client, s3, database="dev", iam_role=ROLE, s3_staging=STAGING, cluster="nope")
    assert str(info.value) == (
        "redshift warehouse nope: ValidationException: Redshift endpoint doesn't exist in this region.; "
        "check warehouse.redshift_cluster/redshift_workgroup, redshift_database and the credentials"
    )
    api.stub.add_client_error("execute_statement", service_error_code="AccessDeniedException", service_message="no")
    with pytest.raises(WarehouseError, match="AccessDeniedException: no; grant redshift-data"):
        RedshiftWarehouse(api.client, s3, database="dev", iam_role=ROLE, s3_staging=STAGING, cluster="c1")


def test_an_unreachable_data_api_is_one_line() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3.session.Session(region_name=REGION).client(
        "redshift-data", endpoint_url=f"http://127.0.0.1:{port}", config=Config(retries={"max_attempts": 1})
    )
    with pytest.raises(WarehouseError, match=r"^redshift warehouse: cannot reach the Data API: .*check warehouse\.aws_region"):  # noqa: E501
        RedshiftWarehouse(client, None, database="dev", iam_role=ROLE, s3_staging=STAGING, cluster="c1")


def test_config_requires_one_target_the_role_and_an_s3_staging_url() -> None:
    with pytest.raises(ValueError, match=r"one of warehouse\.redshift_cluster"):
        WarehouseConfig(backend="redshift", redshift_database="d", redshift_iam_role=ROLE, redshift_s3_staging=STAGING)
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        WarehouseConfig(
            backend="redshift", redshift_cluster="c", redshift_database="d", redshift_iam_role=ROLE,
            redshift_s3_staging="/tmp/x",
        )  # fmt: skip


def test_transaction_sends_one_batch_or_nothing(api: DataApi, s3: Any) -> None:
    wh = _open(api, s3)
    with pytest.raises(RuntimeError), wh.transaction():
        wh.execute("DELETE FROM labels WHERE week = $week", {"week": 2})
        raise RuntimeError("boom")
    api.ok(call="batch_execute_statement")
    with wh.transaction():
        wh.execute("DELETE FROM labels WHERE week = $week", {"week": 2})
        with wh.transaction():
            wh.execute("INSERT INTO labels (product_id) VALUES ($id)", {"id": "it's"})
    # the probe, then one batch: the failed block sent nothing
    names = [n for n, _ in api.calls]
    assert names == ["ExecuteStatement", "DescribeStatement", "BatchExecuteStatement", "DescribeStatement"]
    assert api.calls[-2][1]["Sqls"] == [
        "DELETE FROM labels WHERE week = 2", "INSERT INTO labels (product_id) VALUES ('it''s')"
    ]  # fmt: skip


def test_literals_render_every_type_safely() -> None:
    assert render(
        "VALUES ($a, $b, $c, $d, $e, $f)",
        {"a": None, "b": True, "c": 3, "d": 0.5, "e": datetime(2026, 2, 1, 3, 4, 5), "f": "o'k"},
    ) == "VALUES (NULL, TRUE, 3, 0.5, TIMESTAMP '2026-02-01 03:04:05', 'o''k')"
    with pytest.raises(WarehouseError, match=r"\$x"):
        render("SELECT $x", {})
    assert literal(float("nan")) == "NULL"


# -- the exactly-once load ----------------------------------------------------------------------------

_PRED_COLS = [
    ("product_id", "character varying"), ("run_id", "character varying"), ("mode", "character varying"),
    ("recommended_type", "character varying"),
] + [(prob_column(t), "double precision") for t in TYPES] + [(f"model_version_{t}", "integer") for t in TYPES] + [
    ("is_current", "boolean")
]  # fmt: skip


def _expect_first_load(api: DataApi, n: int, stage_rows: int | None = None) -> None:
    api.ok()  # CREATE TABLE IF NOT EXISTS predictions
    api.ok(rows=[[c] for c, _ in _PRED_COLS], columns=[("column_name", "varchar")])
    api.ok()  # prediction_runs
    api.ok()  # run_watermarks
    api.ok(rows=[], columns=[("run_id", "varchar")])  # ledger: not loaded yet
    api.ok(rows=[[1]], columns=[("n", "int8")])  # run_watermarks exists
    api.ok(rows=[], columns=[("watermark", "timestamp")])  # no watermark yet
    api.ok(rows=[[1]], columns=[("n", "int8")])  # prediction_runs exists
    api.ok(rows=[], columns=[("run_id", "varchar")])  # no previous run
    api.ok()  # DROP stage
    api.ok()  # CREATE stage
    api.ok()  # COPY
    rows = n if stage_rows is None else stage_rows
    api.ok(rows=[[rows, rows]], columns=[("n", "int8"), ("d", "int8")])


def _load_kwargs(n: int) -> dict[str, Any]:
    return {
        "run_id": "run-7", "mode": "daily", "package_types": TYPES, "versions": V2, "expected_rows": n,
        "since": datetime(2026, 1, 1), "watermark": datetime(2026, 2, 1), "recommended": {"box": n},
        "unseen": {"category": 1}, "batch_rows": 64,
    }  # fmt: skip


def test_load_copies_the_shards_from_s3_then_swaps_in_one_batch(
    api: DataApi, s3: Any, tmp_path: Path, postgres_dsn_env: str
) -> None:
    files = [
        scored_file(tmp_path / "a.parquet", _ids(1, 150), 1),
        scored_file(tmp_path / "b.parquet", _ids(151, 50), 2),
    ]
    wh = _open(api, s3)
    _expect_first_load(api, 200)
    api.ok(rows=[[0]], columns=[("n", "int8")])  # superseded
    api.ok(call="batch_execute_statement")
    result = load_predictions(wh, files, **_load_kwargs(200))
    assert result.loaded and result.n_products == 200 and result.watermark_after == "2026-02-01T00:00:00"
    api.stub.assert_no_pending_responses()

    stage = _stage_name("run-7")
    sent = api.sql()
    assert sent[10:12] == create_stage(stage, TYPES)
    copy = sent[12]
    match = re.fullmatch(
        rf"COPY {stage} FROM 's3://packwise-test-bucket/(redshift-staging/copy/[0-9a-f]{{32}}/)' "
        r"IAM_ROLE 'arn:aws:iam::123456789012:role/packwise-redshift' FORMAT AS PARQUET",
        copy,
    )
    assert match, copy
    keys = _objects(s3, match.group(1))
    assert [k.rsplit("/", 1)[1] for k in keys] == ["part-00000.parquet", "part-00001.parquet"]
    batch = api.calls[-2]
    assert batch[0] == "BatchExecuteStatement"
    statements = batch[1]["Sqls"]
    assert [s.split(" ")[0] + " " + s.split(" ")[2] for s in statements] == [
        "UPDATE SET", "INSERT predictions", "DELETE run_watermarks", "INSERT run_watermarks",
        "INSERT prediction_runs", "DROP " + stage,
    ]  # fmt: skip
    assert "TIMESTAMP '2026-02-01 00:00:00'" in statements[3] and "'run-7'" in statements[4]

    # The same batch, for real, on PostgreSQL: the stage filled from the uploaded objects.
    with open_warehouse(WarehouseConfig(backend="postgres", dsn_env=postgres_dsn_env)) as pg:
        _redshift_tables(pg)
        for statement in create_stage(stage, TYPES):
            pg.execute(statement)
        for key in keys:
            s3.download_file(BUCKET, key, str(tmp_path / "obj.parquet"))
            pg.append(stage, pq.read_table(tmp_path / "obj.parquet"))
        with pg.transaction():
            for statement in statements:
                pg.execute(statement)
        current = current_predictions(pg)
        source = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
        assert current["product_id"].tolist() == source["product_id"].tolist()
        assert current["recommended_type"].tolist() == source["recommended_type"].astype(str).tolist()
        assert current["prob_mailer"].tolist() == pytest.approx(source["prob_mailer"].astype(float).tolist())
        assert current["model_version_mailer"].eq(3).all() and current["run_id"].eq("run-7").all()
        assert read_watermark(pg, "daily") == datetime(2026, 2, 1)
        assert pg.fetch_df(f"SELECT run_id, n_products FROM {PREDICTION_RUNS}").values.tolist() == [["run-7", 200]]
        assert not pg.table_exists(stage)


def _redshift_tables(pg: Any) -> None:
    """The tables as Redshift holds them: predictions one table (PostgreSQL's own layout is a view of a
    current table and its history, `packwise.prediction_tables`, which Redshift's swap does not write)."""
    from packwise.prediction_ledger import predictions_columns

    columns = ", ".join(f"{c} {t}" for c, t in predictions_columns(TYPES))
    pg.execute(f"CREATE TABLE predictions ({columns}, PRIMARY KEY (product_id, run_id))")
    ensure_tables(pg, TYPES)


def test_the_swap_sql_on_postgresql_is_all_or_nothing_and_supersedes(postgres_dsn_env: str) -> None:
    with open_warehouse(WarehouseConfig(backend="postgres", dsn_env=postgres_dsn_env)) as pg:
        _redshift_tables(pg)

        def staged(run_id: str, ids: list[str], wm: datetime) -> StagedRun:
            stage = _stage_name(run_id)
            for statement in create_stage(stage, TYPES):
                pg.execute(statement)
            frame = pd.DataFrame({"product_id": ids, "recommended_type": "box"})
            for t in TYPES:
                frame[prob_column(t)] = 0.5
            pg.append(stage, frame)
            return StagedRun(
                stage=stage, run_id=run_id, mode="monthly", package_types=TYPES, versions=V2, n_products=len(ids),
                since=None, watermark=wm, watermark_after=wm, recommended={"box": len(ids)}, unseen={},
                loaded_at=datetime(2026, 3, 1),
            )  # fmt: skip

        with pg.transaction():
            for statement in swap_statements(staged("run-1", _ids(1, 20), datetime(2026, 2, 1))):
                pg.execute(statement)
        before = pg.fetch_df("SELECT * FROM predictions ORDER BY product_id, run_id")
        second = swap_statements(staged("run-2", _ids(11, 20), datetime(2026, 3, 1)))
        for k in range(len(second)):
            with pytest.raises(RuntimeError), pg.transaction():
                for statement in second[:k]:
                    pg.execute(statement)
                raise RuntimeError("interrupted")
            pd.testing.assert_frame_equal(pg.fetch_df("SELECT * FROM predictions ORDER BY product_id, run_id"), before)
            assert read_watermark(pg, "monthly") == datetime(2026, 2, 1)
        with pg.transaction():
            for statement in second:
                pg.execute(statement)
        current = current_predictions(pg)
        assert len(current) == 30 and current["product_id"].is_unique
        assert current.groupby("run_id").size().to_dict() == {"run-1": 10, "run-2": 20}
        assert read_watermark(pg, "monthly") == datetime(2026, 3, 1)


def test_an_interrupted_load_sends_no_batch(api: DataApi, s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    files = [scored_file(tmp_path / "a.parquet", _ids(1, 30), 1)]
    wh = _open(api, s3)
    _expect_first_load(api, 30)
    api.ok(rows=[[0]], columns=[("n", "int8")])
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "load-predictions/commit")
    with pytest.raises(InjectedFault):
        load_predictions(wh, files, **_load_kwargs(30))
    assert "BatchExecuteStatement" not in [n for n, _ in api.calls]


def test_a_short_stage_is_dropped_and_nothing_swapped(api: DataApi, s3: Any, tmp_path: Path) -> None:
    files = [scored_file(tmp_path / "a.parquet", _ids(1, 30), 1)]
    wh = _open(api, s3)
    _expect_first_load(api, 31, stage_rows=30)
    api.ok()  # DROP stage
    with pytest.raises(WarehouseError, match=r"hold 30 rows \(30 distinct products\), expected 31"):
        load_predictions(wh, files, **_load_kwargs(31))
    assert api.sql()[-1] == f"DROP TABLE IF EXISTS {_stage_name('run-7')}"
    assert "BatchExecuteStatement" not in [n for n, _ in api.calls]


def test_an_empty_unload_gives_an_empty_file_with_the_querys_schema(api: DataApi, s3: Any, tmp_path: Path) -> None:
    wh = _open(api, s3)
    api.ok()  # UNLOAD writes no part
    api.ok(rows=[], columns=[("product_id", "varchar"), ("added_at", "timestamp"), ("weight_kg", "float8")])
    assert wh.copy_query_to_parquet("SELECT * FROM products WHERE false", None, tmp_path / "e.parquet") == 0
    schema = pq.read_schema(tmp_path / "e.parquet")
    assert schema.names == ["product_id", "added_at", "weight_kg"]
    assert schema.field("added_at").type == pa.timestamp("us") and schema.field("weight_kg").type == pa.float64()


def test_fetch_reads_every_result_page(api: DataApi, s3: Any) -> None:
    wh = _open(api, s3)
    sid = "paged"
    api.stub.add_response("execute_statement", {"Id": sid})
    api.stub.add_response("describe_statement", {"Id": sid, "Status": "FINISHED", "HasResultSet": True}, {"Id": sid})
    meta = [{"name": "run_id", "typeName": "varchar"}, {"name": "loaded_at", "typeName": "timestamp"}]
    api.stub.add_response(
        "get_statement_result",
        {"Records": [[_field("a"), _field("2026-02-01 00:00:00")]], "ColumnMetadata": meta, "NextToken": "t2"},
        {"Id": sid},
    )
    api.stub.add_response(
        "get_statement_result",
        {"Records": [[_field("b"), _field(None)]], "ColumnMetadata": meta},
        {"Id": sid, "NextToken": "t2"},
    )
    frame = wh.fetch_df("SELECT run_id, loaded_at FROM prediction_runs")
    assert frame["run_id"].tolist() == ["a", "b"]
    assert frame["loaded_at"].iloc[0] == pd.Timestamp("2026-02-01") and pd.isna(frame["loaded_at"].iloc[1])


def test_a_run_id_loaded_by_the_other_mode_is_refused_before_anything_is_staged(
    api: DataApi, s3: Any, tmp_path: Path
) -> None:
    files = [scored_file(tmp_path / "a.parquet", _ids(1, 30), 1)]
    wh = _open(api, s3)
    api.ok()  # CREATE TABLE IF NOT EXISTS predictions
    api.ok(rows=[[c] for c, _ in _PRED_COLS], columns=[("column_name", "varchar")])
    api.ok()  # prediction_runs
    api.ok()  # run_watermarks
    ledger = [("run_id", "varchar"), ("mode", "varchar"), ("n_products", "int8"), ("since", "timestamp"),
              ("watermark", "timestamp"), ("models", "varchar"), ("recommended", "varchar"), ("unseen", "varchar"),
              ("loaded_at", "timestamp")]  # fmt: skip
    api.ok(rows=[["run-7", "monthly", 30, None, None, "{}", "{}", "{}", "2026-02-01 00:00:00"]], columns=ledger)
    with pytest.raises(WarehouseError, match=r"run id 'run-7' was already loaded by a monthly run; give this daily"):
        load_predictions(wh, files, **_load_kwargs(30))
    api.stub.assert_no_pending_responses()
    assert not [s for s in api.sql() if "prediction_stage_" in s]
