"""The package types' register tasks run side by side against one `mlflow server` (kfp runs ParallelFor
iterations at once): what they share, the week's label snapshot and the pipeline's parent run, must come
out whole and single however their requests interleave.

A real `mlflow server` with its store in PostgreSQL, as in production. Each round releases its threads
from a barrier into the very call they race on, so the interleaving a pipeline meets now and then is met
every round here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from packwise.registry import Candidate, Status, TrainingRecord
from packwise.registry.mlflow_runs import ensure_experiment, log_dataset, parent_run
from packwise.registry.mlflow_store import KFP_RUN_TAG, TAG_ROLE
from tests.integration.test_mlflow_server import mlflow_server, sqlalchemy_uri
from tests.postgres_server import PostgresServer

TASKS = 4  # the four package types
ROUNDS = 6
T = TypeVar("T")


@pytest.fixture(scope="module")
def client(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from mlflow.tracking import MlflowClient

    base = tmp_path_factory.mktemp("mlflow-concurrency")
    store = sqlalchemy_uri(postgres.create_database())
    with mlflow_server(store, (base / "artifacts").as_uri(), base / "mlflow-server.log") as uri:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)


def candidate(package_type: str, fingerprint: str, week: int, pipeline_run_id: str) -> Candidate:
    return Candidate(
        package_type=package_type,
        model_file=Path("unused.tar.gz"),
        status=Status.APPROVED,
        candidate_key=f"{package_type}-{fingerprint}",
        data_fingerprint=fingerprint,
        model_type="xgboost",
        metrics={},
        label_stats={},
        gate_report="",
        reason="",
        who="packwise-pipeline",
        run_id="",
        training=TrainingRecord(
            pipeline_run_id=pipeline_run_id, week=week, snapshot_uri=f"file:///tmp/snapshots/{fingerprint}"
        ),
    )


def all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Runs ``calls`` on threads of their own, released together."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(released, calls))


def test_every_candidate_run_logs_the_shared_label_snapshot(client: Any) -> None:
    experiment = ensure_experiment(client, "snapshot-race", None)
    types = ["own_container", "bag", "mailer", "box"][:TASKS]
    for week in range(1, ROUNDS + 1):
        fingerprint = f"{week:02d}" + "ab" * 31
        runs = [client.create_run(experiment).info.run_id for _ in types]
        shared = [candidate(t, fingerprint, week, f"kfp-{week}") for t in types]
        all_at_once([lambda r=r, c=c: log_dataset(client, r, c) for r, c in zip(runs, shared, strict=True)])
        for run_id in runs:
            inputs = client.get_run(run_id).inputs.dataset_inputs
            assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [
                (f"label-snapshot-week-{week}", fingerprint[:36])
            ], f"week {week}: run {run_id} lost its training dataset"


def test_candidates_of_one_pipeline_run_share_one_parent(client: Any) -> None:
    experiment = ensure_experiment(client, "parent-race", None)
    types = ["own_container", "bag", "mailer", "box"][:TASKS]
    for week in range(1, ROUNDS + 1):
        pipeline_run = f"kfp-run-{week}"
        shared = [candidate(t, f"fp{week}", week, pipeline_run) for t in types]
        parents = all_at_once([lambda c=c: parent_run(client, experiment, c) for c in shared])
        assert len(set(parents)) == 1, f"week {week}: the package types got different parents {parents}"
        found = client.search_runs(
            [experiment], filter_string=f"tags.`{KFP_RUN_TAG}` = '{pipeline_run}' and tags.`{TAG_ROLE}` = 'pipeline'"
        )
        assert [r.info.run_id for r in found] == parents[:1], f"week {week}: more than one parent run is left"
        # a register task of the same pipeline run that starts later finds that parent
        assert parent_run(client, experiment, shared[0]) == parents[0]
