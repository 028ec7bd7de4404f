"""The Redshift Data API (boto3 `redshift-data`) as the Redshift warehouse uses it: submit, poll, page.

Every statement is polled with `describe_statement` until it finishes, up to `timeout_s` (botocore has no
waiter for redshift-data); a FAILED statement raises Redshift's error text as a `QueryError`, a refused
call a one-line `WarehouseError` naming what to fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from packwise.errors import WarehouseError
from packwise.warehouse import QueryError
from packwise.warehouse.sql import render

_DONE = {"FINISHED"}
_BROKEN = {"FAILED", "ABORTED"}


def first_line(text: str) -> str:
    """The first non-blank line of an AWS or Redshift error text."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "no error text"


def _field_value(field: Mapping[str, Any]) -> Any:
    if field.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue"):
        if key in field:
            return field[key]
    return None  # pragma: no cover - blobValue, never selected by Packwise


class DataApi:
    """Statements on one Redshift target (cluster or workgroup, database, credentials) through the Data API.

    Args:
        client: A boto3 `redshift-data` client.
        target: The target's call parameters (Database, ClusterIdentifier or WorkgroupName, DbUser, SecretArn).
        timeout_s: Longest wait for one statement.
        poll_s: Pause between two `describe_statement` calls.
        sleep: The pause function (tests pass a no-op).
    """

    def __init__(
        self,
        client: Any,
        target: Mapping[str, str],
        timeout_s: float,
        poll_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.target = dict(target)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._sleep = sleep

    def where(self) -> str:
        """The target as an error message names it."""
        return self.target.get("ClusterIdentifier") or f"workgroup {self.target.get('WorkgroupName')}"

    def submit(self, call: str, **kwargs: Any) -> str:
        """Sends one Data API call for the target; returns the statement id."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = getattr(self.client, call)(**self.target, **kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            text = first_line(err.response.get("Error", {}).get("Message", str(err)))
            fix = (
                "grant redshift-data:* and access to the secret to the role running Packwise"
                if code in {"AccessDeniedException", "UnrecognizedClientException"}
                else "check warehouse.redshift_cluster/redshift_workgroup, redshift_database and the credentials"
            )
            raise WarehouseError(f"redshift warehouse {self.where()}: {code}: {text}; {fix}") from None
        except BotoCoreError as err:
            raise WarehouseError(
                f"redshift warehouse: cannot reach the Data API: {first_line(str(err))}; "
                "check warehouse.aws_region and the network"
            ) from None
        return str(response["Id"])

    def wait(self, statement_id: str) -> dict[str, Any]:
        """Polls a statement until it finishes; past the timeout it is cancelled and a `QueryError` raised."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            described: dict[str, Any] = self.client.describe_statement(Id=statement_id)
            status = described.get("Status")
            if status in _DONE:
                return described
            if status in _BROKEN:
                error = first_line(described.get("Error") or status)
                raise QueryError(f"redshift: {error}")
            if time.monotonic() >= deadline:
                try:
                    self.client.cancel_statement(Id=statement_id)
                finally:
                    raise QueryError(
                        f"redshift: statement {statement_id} still {status} after {self.timeout_s:g} s (cancelled); "
                        "raise warehouse.statement_timeout_s or make the query cheaper"
                    )
            self._sleep(self.poll_s)

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Runs one statement (`$name` parameters rendered as literals) and waits for it."""
        return self.wait(self.submit("execute_statement", Sql=render(sql, params)))

    def batch(self, statements: Sequence[str]) -> None:
        """Runs the statements as one `batch_execute_statement` (one transaction) and waits for it."""
        self.wait(self.submit("batch_execute_statement", Sqls=list(statements)))

    def columns(self, statement_id: str) -> list[dict[str, Any]]:
        """The column metadata of a finished statement's result."""
        page = self.client.get_statement_result(Id=statement_id)
        return list(page["ColumnMetadata"])

    def fetch_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Runs a query and returns its whole result (every page) as a DataFrame; for small results only."""
        described = self.run(sql, params)
        if not described.get("HasResultSet", True):
            return pd.DataFrame()
        columns: list[dict[str, Any]] = []
        rows: list[list[Any]] = []
        token: str | None = None
        while True:
            page = self.client.get_statement_result(Id=described["Id"], **({"NextToken": token} if token else {}))
            columns = columns or page.get("ColumnMetadata", [])
            rows += [[_field_value(f) for f in record] for record in page.get("Records", [])]
            token = page.get("NextToken")
            if not token:
                break
        frame = pd.DataFrame(rows, columns=[c["name"] for c in columns])
        for column in columns:
            if column.get("typeName") == "timestamp":
                frame[column["name"]] = pd.to_datetime(frame[column["name"]])
        return frame
