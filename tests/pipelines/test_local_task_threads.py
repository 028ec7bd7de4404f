"""Local tasks share the cores: each gets OMP_NUM_THREADS (XGBoost's default thread count) as its share.

kfp.local runs two tasks at once; two XGBoost tasks each on every core oversubscribed a two-core machine
and OpenMP's spinning barriers made a 0.3 s training take 7-35 s (the local DAG on 100k labels took
62 s instead of 23 s).
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.

import json
import os
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl

from packwise.config import ModelConfig
from packwise.cores import LOCAL_CORES_ENV, available_cores, shard_threads, task_threads
from packwise.scoring import Scorer, ScoringModel
from packwise_pipelines import local as local_runner
from tests.conftest import make_config


def test_each_concurrent_task_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "4", LOCAL_CORES_ENV: "8"}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "1", LOCAL_CORES_ENV: "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the caller's choice wins, and no task takes more
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "3"}


def test_cores_are_counted_where_there_is_no_affinity_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS has no os.sched_getaffinity: the count falls back to os.cpu_count()
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert available_cores() == 6
    assert task_threads() == 6
    assert local_runner.task_environment() == {"OMP_NUM_THREADS": "3", LOCAL_CORES_ENV: "6"}


def test_a_subprocess_task_sees_the_share_and_the_environment_is_restored_after_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = make_config(tmp_path / "state")
    seen = tmp_path / "seen.json"

    @dsl.component(base_image="unused-by-the-subprocess-runner", install_kfp_package=False)
    def report_threads(path: str) -> None:
        import json
        import os

        from packwise.cores import shard_threads, task_threads

        with open(path, "w") as out:
            seen = {"omp": os.environ.get("OMP_NUM_THREADS"), "task_threads": task_threads()}
            json.dump({**seen, "lone_shard": shard_threads(1, 2)}, out)

    @dsl.pipeline(name="threads")
    def threads(path: str, run_id: str = "") -> None:
        report_threads(path=path).set_caching_options(False)

    run = local_runner.run_pipeline_locally(threads, {"path": str(seen)}, cfg, "threads-run")
    assert run.succeeded, run.log_path.read_text()[-2000:]
    share = max(1, available_cores() // local_runner.LOCAL_CONCURRENT_TASKS)
    assert json.loads(seen.read_text()) == {"omp": str(share), "task_threads": share, "lone_shard": available_cores()}
    assert "OMP_NUM_THREADS" not in os.environ and LOCAL_CORES_ENV not in os.environ


def test_a_run_of_fewer_shards_than_are_scored_at_once_gives_them_the_idle_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While shards score nothing else runs in the inference DAG: a 5M-product month in one shard scored on
    one core of two (kfp.local's share) until its lone shard took both."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv(LOCAL_CORES_ENV, "4")
    assert shard_threads(1, 2) == 4  # one shard: every shared core
    assert shard_threads(2, 2) == 2  # two at once: the share
    assert shard_threads(7, 2) == 2
    assert shard_threads(1, 1) == 4 and shard_threads(3, 1) == 4  # one at a time: each the whole machine
    assert shard_threads(0, 2) == 2  # the shard count unknown: the share
    monkeypatch.delenv(LOCAL_CORES_ENV)  # a cluster's pod, or the caller's own OMP_NUM_THREADS: the share
    assert shard_threads(1, 2) == 2


def test_a_lone_shard_is_scored_on_the_shared_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the score-shard step: the shard directory's manifest says how many shards the run has, and
    oneDAL's thread pool (process-wide) is what the scorer set."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from packwise.config import ComputeConfig, InferenceConfig
    from packwise.engine import onedal_available
    from packwise.inference import score_shard
    from packwise.inference.shards import MANIFEST_FILE
    from packwise.synthetic import generate_products
    from tests.unit.test_inference_scoring import models_entry, train_models

    if not onedal_available():
        pytest.skip("daal4py does not import here: no oneDAL thread pool to read")
    import daal4py

    models = models_entry(train_models(tmp_path / "models", n=500, rounds=3))
    shard = tmp_path / "shards" / "shard-00000.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.Table.from_pandas(generate_products(40, seed=5), preserve_index=False), shard)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(LOCAL_CORES_ENV, "2")
    for names, threads in ((["shard-00000.parquet"], 2), (["shard-00000.parquet", "shard-00001.parquet"], 1)):
        (shard.parent / MANIFEST_FILE).write_text(json.dumps({"shards": names}))
        stats = score_shard(shard, models, ComputeConfig(), None, InferenceConfig(), tmp_path / f"out{threads}.parquet")
        assert stats["rows"] == 40 and daal4py.num_threads() == threads


def test_docker_tasks_get_the_share_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "evaluate:box")
    env = local_runner.docker_run_args(make_config(tmp_path / "state"))["environment"]
    assert env == {"OMP_NUM_THREADS": "1", "PACKWISE_FAIL_TASK": "evaluate:box"}


def test_the_scorer_uses_the_task_share_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import xgboost as xgb

    from packwise.features import FeatureSpec

    booster = xgb.train(
        {**ModelConfig().params, "objective": "binary:logistic"},
        xgb.DMatrix(np.random.default_rng(0).random((50, 2)), label=np.arange(50) % 2),
        num_boost_round=2,
    )
    spec = FeatureSpec(numeric=("a", "b"), boolean=(), categorical={}, derived=())

    def nthread(scorer: Scorer) -> int:
        return int(json.loads(scorer.models[0].booster.save_config())["learner"]["generic_param"]["nthread"])

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert task_threads() == 1
    assert nthread(Scorer([ScoringModel("box", 1, booster, spec, 0.5)])) == 1
    assert nthread(Scorer([ScoringModel("box", 1, booster, spec, 0.5)], threads=3)) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert task_threads() == available_cores() == len(os.sched_getaffinity(0))


def test_docker_tasks_on_an_s3_root_get_the_aws_settings_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The containers' S3 client needs the caller's endpoint, region and credentials; nothing of the bucket is
    mounted (it is reached over the network), only the local workspace kfp.local writes."""
    pytest.importorskip("docker")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("PACKWISE_FAIL_TASK", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws = {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    cfg = make_config(tmp_path / "state", storage={"root": "s3://bucket/p", "local_dir": str(tmp_path / "local")})
    args = local_runner.docker_run_args(cfg)
    assert args["environment"] == {"OMP_NUM_THREADS": "1", **aws}
    assert str(tmp_path / "local") in [m["Target"] for m in args["mounts"]]
